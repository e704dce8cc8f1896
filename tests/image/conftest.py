"""Session fixtures for the image tests: one private container storage, mirrord's image built once in it,
and a runnable busybox root file system.

Every test module here marks itself ``image`` and ``integration`` (deselect with ``-m 'not image'``;
``make image-test`` runs only them). The image is built by ``scripts/image.py`` exactly as ``make image``
builds it; the locally made Debian base it may need is cached outside the repository between sessions
(``MIRRORD_IMAGE_CACHE``), so only the first session on a machine pays for debootstrap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.image.kit import (
    Containers,
    build_mirrord_image,
    busybox_rootfs,
    open_containers,
)

MIRRORD_TAG = "localhost/mirrord:image-test"
#: Platforms of the busybox list (the arm64 instance holds the same amd64 binary, labelled arm64).
BUSYBOX_ARCHS = ("amd64", "arm64")


@pytest.fixture(scope="session")
def containers() -> Iterator[Containers]:
    """buildah and podman on a private storage for the session (removed at the end)."""
    opened = open_containers()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def mirrord_image(containers: Containers) -> dict[str, Any]:
    """mirrord's image, built once per session; the build summary (``tag``, ``size_bytes``, ``seconds``)."""
    return build_mirrord_image(containers, MIRRORD_TAG)


@pytest.fixture(scope="session")
def busybox_rootfs_tar(containers: Containers) -> Path:
    """A runnable root file system tarball (Debian's static busybox and applet links)."""
    return busybox_rootfs(containers.home / "busybox-rootfs.tar")
