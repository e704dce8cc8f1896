"""OCI image layout directories (``oci:PATH[:TAG]``) as a :class:`~mirrord.registry.base.Repository`.

``repository`` is the Repository; ``index`` the index.json entries; ``reference`` the ``oci:``
syntax; ``files`` the blocking file helpers and locks. Atomic writes come from
:mod:`mirrord.core.files`.

The names below load their submodule at first use: every ``mirrord sync`` checks its targets for
``oci:`` (``reference``), but only a plan that has a layout needs the repository code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mirrord.registry.layout.index import REF_NAME_ANNOTATION
    from mirrord.registry.layout.reference import parse_layout_reference
    from mirrord.registry.layout.repository import LayoutRepository

__all__ = ["REF_NAME_ANNOTATION", "LayoutRepository", "parse_layout_reference"]

_SUBMODULE = {
    "REF_NAME_ANNOTATION": "index",
    "LayoutRepository": "repository",
    "parse_layout_reference": "reference",
}


def __getattr__(name: str) -> Any:
    """``REF_NAME_ANNOTATION``, ``LayoutRepository`` or ``parse_layout_reference`` from its submodule."""
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value
    return value
