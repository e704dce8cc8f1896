"""OCI image layout directories (``oci:PATH[:TAG]``) as a :class:`~mirrord.registry.base.Repository`.

``repository`` is the Repository; ``index`` the index.json entries; ``reference`` the ``oci:``
syntax; ``files`` the blocking file helpers and locks. Atomic writes come from
:mod:`mirrord.core.files`.
"""

from mirrord.registry.layout.index import REF_NAME_ANNOTATION
from mirrord.registry.layout.reference import parse_layout_reference
from mirrord.registry.layout.repository import LayoutRepository

__all__ = ["REF_NAME_ANNOTATION", "LayoutRepository", "parse_layout_reference"]
