"""Media types of the Docker and OCI image formats, and predicates over them."""

from typing import Final

DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_V1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG: Final = "application/vnd.docker.plugin.v1+json"

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND_TAR: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION: Final = "1.0.0"

INDEX_TYPES: Final = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_MANIFEST_TYPES: Final = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
SCHEMA1_TYPES: Final = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})
MANIFEST_TYPES: Final = INDEX_TYPES | IMAGE_MANIFEST_TYPES

#: What we send in ``Accept`` on manifest requests: every type we can read (schema1 last so that a
#: registry able to convert prefers schema2; we still recognise schema1 to report it clearly).
MANIFEST_ACCEPT: Final = (
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
)

NON_DISTRIBUTABLE_LAYER_TYPES: Final = frozenset(
    {DOCKER_LAYER_FOREIGN_GZIP, OCI_LAYER_ND_TAR, OCI_LAYER_ND_GZIP, OCI_LAYER_ND_ZSTD}
)


def is_index(media_type: str) -> bool:
    """True for a Docker manifest list or an OCI index."""
    return media_type in INDEX_TYPES


def is_image_manifest(media_type: str) -> bool:
    """True for a Docker schema2 or OCI image manifest."""
    return media_type in IMAGE_MANIFEST_TYPES


def is_non_distributable(media_type: str) -> bool:
    """True for foreign / non-distributable layers, which registries do not serve and mirrors skip."""
    return media_type in NON_DISTRIBUTABLE_LAYER_TYPES
