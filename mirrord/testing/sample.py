"""Deterministic sample images for ``make demo``, the tests and the benchmark.

:func:`sample_image` builds an image of a chosen shape (Docker list, OCI index, nested index,
attestations, artifact, ...) entirely in memory: layers are real gzip'ed tars of pseudo-random files
(incompressible, so a layer's size is close to ``layer_size``), configs are valid image configs whose
``rootfs.diff_ids`` are the sha256 of the uncompressed tars, so skopeo and registries accept them. The
same arguments always give the same bytes and digests. Layers made from ``base_seed`` do not depend
on the image name or seed, so images built with one ``base_seed`` share their base layers.

:func:`push_sample` pushes one to any :class:`~mirrord.registry.base.Repository`: blobs first, then
the manifests by digest (children first), then the root under the tag.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mirrord.oci import AnyManifest, Digest, ImageIndex, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.registry.base import Repository

KINDS = (
    "docker-list",
    "oci-index",
    "oci-index-no-mediatype",
    "nested-index",
    "docker-manifest",
    "oci-manifest",
    "artifact",
    "attested-index",
    "duplicate-layer",
    "odd-json",
)
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
ARTIFACT_TYPE = "application/vnd.mirrord.sample.v1"
ARTIFACT_LAYER_TYPE = "application/vnd.mirrord.sample.layer.v1"
IN_TOTO = "application/vnd.in-toto+json"
_EMPTY_JSON = b"{}"
_PUSH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SampleImage:
    """A built image: the manifest a tag points at, every manifest (children first), and the blobs."""

    root: AnyManifest
    manifests: tuple[AnyManifest, ...]
    blobs: Mapping[Digest, bytes] = field(repr=False)

    @property
    def digest(self) -> Digest:
        """Digest of the root manifest (what the tag resolves to)."""
        return self.root.digest


@dataclass(frozen=True)
class _Layer:
    blob: bytes
    diff_id: Digest


class _Builder:
    """Accumulates blobs and manifests in push order while one image is built."""

    def __init__(self, name: str, seed: int, base_seed: int | None, layers: int, layer_size: int,
                 serialise: Callable[[dict[str, Any]], bytes]) -> None:  # fmt: skip
        self.name, self.seed, self.base_seed = name, seed, base_seed
        self.layer_count, self.layer_size = layers, layer_size
        self.serialise = serialise
        self.blobs: dict[Digest, bytes] = {}
        self.manifests: list[AnyManifest] = []

    def blob(self, media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
        """Record a blob and return its descriptor JSON."""
        digest = Digest.of(data)
        self.blobs.setdefault(digest, data)
        return {"mediaType": media_type, "digest": str(digest), "size": len(data), **extra}

    def manifest(self, obj: dict[str, Any], media_type: str, **extra: Any) -> dict[str, Any]:
        """Serialise and record a manifest; return its descriptor JSON."""
        raw = self.serialise(obj)
        parsed = parse_manifest(raw, media_type)
        self.manifests.append(parsed)
        return {"mediaType": media_type, "digest": str(parsed.digest), "size": len(raw), **extra}

    def layers(self, platform: str) -> list[_Layer]:
        """The layers of one platform image: a shared base layer first when ``base_seed`` is set."""
        keys = [f"{self.name}|{self.seed}|{platform}|{i}" for i in range(self.layer_count)]
        if self.base_seed is not None and keys:
            keys[0] = f"base|{self.base_seed}|{platform}"
        return [_make_layer(key, self.layer_size) for key in keys]


# -- content ---------------------------------------------------------------------------------------


def _pseudo_random(key: str, size: int) -> bytes:
    # A str seed is hashed with SHA-512 by random.Random, so this is stable across runs and versions.
    return random.Random(key).randbytes(size)


def _tar(files: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _make_layer(key: str, size: int) -> _Layer:
    """A gzip'ed tar holding one pseudo-random file of ``size`` bytes and a small text file."""
    slug = hashlib.sha256(key.encode()).hexdigest()[:12]
    tar = _tar(
        [(f"sample/{slug}.txt", f"layer {key}\n".encode()), (f"sample/{slug}.bin", _pseudo_random(key, size))]
    )
    blob = gzip.compress(tar, compresslevel=1, mtime=0)
    return _Layer(blob, Digest.of(tar))


def _parse_platform(text: str) -> dict[str, str]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform must be os/arch[/variant], not {text!r}")
    platform = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        platform["variant"] = parts[2]
    return platform


def _config(b: _Builder, platform: dict[str, str], diff_ids: Sequence[Digest]) -> bytes:
    obj: dict[str, Any] = {
        **platform,
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.mirrord.sample": b.name, "org.mirrord.sample.seed": str(b.seed)},
        },
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "mirrord.sample"} for _ in diff_ids],
    }
    return b.serialise(obj)


# -- image manifests --------------------------------------------------------------------------------


def _image(b: _Builder, platform_text: str, *, docker: bool = False, duplicate: bool = False,
           **descriptor_extra: Any) -> dict[str, Any]:  # fmt: skip
    """Build one platform image manifest; returns its descriptor JSON (with ``descriptor_extra``)."""
    platform = _parse_platform(platform_text)
    layers = b.layers(platform_text)
    if duplicate:
        layers = [*layers, layers[0]]
    layer_type = mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP
    config = _config(b, platform, [layer.diff_id for layer in layers])
    media_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    obj = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": b.blob(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, config),
        "layers": [b.blob(layer_type, layer.blob) for layer in layers],
    }
    return b.manifest(obj, media_type, **descriptor_extra)


def _platform_images(b: _Builder, platforms: Sequence[str], *, docker: bool = False) -> list[dict[str, Any]]:
    return [_image(b, p, docker=docker, platform=_parse_platform(p)) for p in platforms]


def _attestation(b: _Builder, image: dict[str, Any]) -> dict[str, Any]:
    """A BuildKit-style attestation manifest for ``image``, as an index entry."""
    statement = b.serialise({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": b.name, "digest": {"sha256": image["digest"].split(":", 1)[1]}}],
        "predicate": {"spdxVersion": "SPDX-2.3", "name": b.name},
    })  # fmt: skip
    config = b.serialise({
        "architecture": "unknown", "os": "unknown", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(statement))]},
    })  # fmt: skip
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": b.blob(mt.OCI_CONFIG, config),
        "layers": [
            b.blob(IN_TOTO, statement, annotations={"in-toto.io/predicate-type": "https://spdx.dev/Document"})
        ],
    }
    annotations = {
        "vnd.docker.reference.digest": image["digest"],
        "vnd.docker.reference.type": "attestation-manifest",
    }
    platform = {"architecture": "unknown", "os": "unknown"}
    return b.manifest(obj, mt.OCI_MANIFEST, annotations=annotations, platform=platform)


def _artifact(b: _Builder) -> None:
    data = _pseudo_random(f"{b.name}|{b.seed}|artifact", b.layer_size)
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": b.blob(mt.OCI_EMPTY, _EMPTY_JSON),
        "layers": [b.blob(ARTIFACT_LAYER_TYPE, data, annotations={"org.opencontainers.image.title": "data"})],
    }
    b.manifest(obj, mt.OCI_MANIFEST)


# -- indexes ----------------------------------------------------------------------------------------


def _index(b: _Builder, entries: list[dict[str, Any]], media_type: str = mt.OCI_INDEX, *,
           with_media_type: bool = True) -> dict[str, Any]:  # fmt: skip
    obj: dict[str, Any] = {"schemaVersion": 2}
    if with_media_type:
        obj["mediaType"] = media_type
    obj["manifests"] = entries
    return b.manifest(obj, media_type)


def _build(b: _Builder, kind: str, platforms: Sequence[str]) -> None:
    """Build the image of ``kind``; the last manifest recorded is the root."""
    if kind == "docker-list":
        _index(b, _platform_images(b, platforms, docker=True), mt.DOCKER_MANIFEST_LIST)
    elif kind in ("oci-index", "odd-json"):
        _index(b, _platform_images(b, platforms))
    elif kind == "oci-index-no-mediatype":
        _index(b, _platform_images(b, platforms), with_media_type=False)
    elif kind == "nested-index":
        _index(b, [_index(b, _platform_images(b, platforms))])
    elif kind in ("docker-manifest", "oci-manifest"):
        _image(b, platforms[0], docker=kind == "docker-manifest")
    elif kind == "duplicate-layer":
        _image(b, platforms[0], duplicate=True)
    elif kind == "artifact":
        _artifact(b)
    elif kind == "attested-index":
        images = _platform_images(b, platforms)
        _index(b, [*images, *(_attestation(b, image) for image in images)])
    else:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def _compact(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _odd(obj: Any) -> Any:
    """Keys in reverse order at every level (dicts keep insertion order when dumped)."""
    if isinstance(obj, dict):
        return {key: _odd(obj[key]) for key in sorted(obj, reverse=True)}
    if isinstance(obj, list):
        return [_odd(item) for item in obj]
    return obj


def _odd_json(obj: dict[str, Any]) -> bytes:
    return (json.dumps(_odd(obj), indent="\t", separators=(" ,", " :  ")) + "\r\n\n").encode()


def sample_image(
    name: str,
    *,
    kind: str = "oci-index",
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    layers: int = 2,
    layer_size: int = 4096,
    seed: int = 0,
    base_seed: int | None = None,
) -> SampleImage:
    """Build a deterministic image of ``kind`` (one of :data:`KINDS`) for ``platforms``.

    Single-manifest kinds use ``platforms[0]``. Each platform image has ``layers`` layers holding
    about ``layer_size`` random bytes each (``duplicate-layer`` lists its first layer once more);
    ``seed`` varies the content; layers built from ``base_seed`` are shared between images.
    ``odd-json`` is an OCI index whose manifests are serialised with tabs, odd separators and
    reversed key order (digests are over those bytes). Raises ValueError for an unknown kind or a
    malformed platform.
    """
    if not platforms:
        raise ValueError("at least one platform is required")
    if layers < 1 and kind not in ("artifact",):
        raise ValueError("an image needs at least one layer")
    builder = _Builder(
        name, seed, base_seed, layers, layer_size, _odd_json if kind == "odd-json" else _compact
    )
    _build(builder, kind, platforms)
    manifests = tuple(builder.manifests)
    return SampleImage(root=manifests[-1], manifests=manifests, blobs=dict(builder.blobs))


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), _PUSH_CHUNK):
        yield bytes(view[start : start + _PUSH_CHUNK])


async def push_sample(repo: Repository, image: SampleImage, tag: str | None = None) -> None:
    """Push ``image`` to ``repo``: blobs not yet present, then child manifests by digest, then the
    root under ``tag`` (by digest when ``tag`` is None)."""
    for digest, data in image.blobs.items():
        if await repo.blob_head(digest) is None:
            await repo.blob_put(digest, len(data), _chunks(data))
    for manifest in image.manifests[:-1]:
        await repo.manifest_put(str(manifest.digest), manifest.raw, manifest.media_type)
    await repo.manifest_put(tag or str(image.root.digest), image.root.raw, image.root.media_type)


def children_of(manifest: AnyManifest) -> tuple[Digest, ...]:
    """Digests an index refers to (empty for an image manifest); handy for checks on samples."""
    return tuple(d.digest for d in manifest.manifests) if isinstance(manifest, ImageIndex) else ()


# -- signatures and referrers (additive: cosign-style tags and OCI referrers) ----------------------

#: Cosign's tag suffixes, and the layer media type of each kind of cosign artifact.
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
COSIGN_SIGNATURE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SPDX_JSON = "text/spdx+json"
REFERRER_TYPE = "application/vnd.mirrord.sample.signature.v1"
_COSIGN_LAYER_TYPES = {".sig": COSIGN_SIGNATURE, ".att": DSSE_ENVELOPE, ".sbom": SPDX_JSON}


def cosign_tag(subject: Digest, suffix: str = "") -> str:
    """Cosign's (and the OCI referrers fallback's, with no suffix) tag for ``subject``:
    ``sha256-<hex>`` + ``.sig`` / ``.att`` / ``.sbom``."""
    return f"{subject.algorithm}-{subject.encoded}{suffix}"


def sample_cosign(subject: AnyManifest, suffix: str, *, seed: int = 0) -> SampleImage:
    """A cosign-style artifact for ``subject`` (pushed under :func:`cosign_tag` ``(digest, suffix)``):
    an OCI image manifest whose one layer is a signature payload (``.sig``), a DSSE envelope
    (``.att``) or an SPDX document (``.sbom``); no ``subject`` field, like cosign's tag scheme."""
    if suffix not in _COSIGN_LAYER_TYPES:
        raise ValueError(f"suffix must be one of {COSIGN_SUFFIXES}, not {suffix!r}")
    b = _Builder(f"cosign{suffix}", seed, None, 1, 0, _compact)
    payload = _compact({"critical": {"image": {"docker-manifest-digest": str(subject.digest)}}, "seed": seed})
    notes = {"dev.cosignproject.cosign/signature": f"c2lnbmF0dXJl{seed}"} if suffix == ".sig" else {}
    config = _compact({"architecture": "", "os": "", "config": {},
                       "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(payload))]}})  # fmt: skip
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": b.blob(mt.OCI_CONFIG, config),
        "layers": [b.blob(_COSIGN_LAYER_TYPES[suffix], payload, annotations=notes)],
    }
    b.manifest(obj, mt.OCI_MANIFEST)
    return SampleImage(root=b.manifests[-1], manifests=tuple(b.manifests), blobs=dict(b.blobs))


def sample_referrer(
    subject: AnyManifest, *, artifact_type: str = REFERRER_TYPE, seed: int = 0
) -> SampleImage:
    """An OCI 1.1 artifact manifest referring to ``subject`` (its ``subject`` field set), with
    ``artifact_type``, an empty config and one small layer."""
    b = _Builder("referrer", seed, None, 1, 0, _compact)
    data = _compact({"signed": str(subject.digest), "seed": seed})
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": b.blob(mt.OCI_EMPTY, _EMPTY_JSON),
        "layers": [b.blob("application/json", data)],
        "subject": {"mediaType": subject.media_type, "digest": str(subject.digest), "size": subject.size},
    }
    b.manifest(obj, mt.OCI_MANIFEST)
    return SampleImage(root=b.manifests[-1], manifests=tuple(b.manifests), blobs=dict(b.blobs))


def referrers_index(referrers: Sequence[AnyManifest]) -> AnyManifest:
    """The OCI referrers fallback index (pushed under ``cosign_tag(subject)``) listing ``referrers``
    with their ``artifactType`` and annotations, as the spec's fallback procedure writes it."""
    entries = []
    for manifest in referrers:
        entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(manifest.digest),
                                 "size": manifest.size}  # fmt: skip
        if manifest.artifact_type:
            entry["artifactType"] = manifest.artifact_type
        if manifest.annotations:
            entry["annotations"] = dict(manifest.annotations)
        entries.append(entry)
    return parse_manifest(_compact({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}))
