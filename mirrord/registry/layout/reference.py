"""``oci:PATH[:TAG]`` references."""

from __future__ import annotations

from pathlib import Path

from mirrord.oci.errors import InvalidReference
from mirrord.oci.reference import validate_tag

LAYOUT_SCHEME = "oci:"


def parse_layout_reference(text: str) -> tuple[Path, str | None]:
    """Split ``oci:PATH[:TAG]`` into the directory and the tag (None when there is none).

    The tag is what follows the LAST ``:`` only when that is a valid tag and the path before it is
    non-empty; otherwise the whole remainder is the path. So ``oci:/srv/x:1.0`` -> (``/srv/x``,
    ``1.0``), ``oci:/srv/x`` -> (``/srv/x``, None), and a path that itself contains ``:`` must be
    followed by a tag to be read whole (``oci:/srv/a:b:latest`` -> (``/srv/a:b``, ``latest``)), since
    ``oci:/srv/a:b`` reads ``b`` as the tag. Raises InvalidReference without the ``oci:`` prefix or
    with an empty path.
    """
    if not text.startswith(LAYOUT_SCHEME):
        raise InvalidReference(f"{text!r} is not an OCI layout reference (oci:PATH[:TAG])")
    rest = text[len(LAYOUT_SCHEME) :]
    if not rest:
        raise InvalidReference(f"{text!r}: the layout path is empty")
    head, sep, tail = rest.rpartition(":")
    if sep and head and is_tag(tail):
        return Path(head), tail
    return Path(rest), None


def is_tag(text: str) -> bool:
    try:
        validate_tag(text)
    except InvalidReference:
        return False
    return True
