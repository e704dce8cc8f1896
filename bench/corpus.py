"""A deterministic corpus of multi-platform images: what it holds and how its blobs are generated.

Shape (all from :class:`CorpusSpec`): repositories ``<prefix>/app-NNN``, each with tags ``1.0.0``,
``1.1.0``, ...; every tag is an OCI index over ``platforms`` platform manifests. The manifest of tag
``i`` on platform ``p`` has the layers

* ``base(p)`` — one per platform, shared by every repository (``base_mb``);
* ``app(repo, p, i-1)`` — for ``i > 0``, the previous tag's app layer: consecutive tags share a layer;
* ``app(repo, p, i)`` — new in this tag (``app_mb``);

and its own config (labels name the repo, tag and platform), so each manifest is unique. Layers are
gzip streams of a one-file tar of pseudo-random bytes from ``random.Random(seed/key)``. The gzip uses
stored blocks (level 0): level 1 on random bytes runs at ~40 MB/s here, too slow to seed 2 GiB, and
registries and copy tools never look inside. ``rootfs.diff_ids`` are the sha256 of the tar, so
skopeo accepts the images. Nothing is held in memory beyond one 1 MiB chunk.
"""

from __future__ import annotations

import hashlib
import json
import random
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

MiB = 1 << 20
CHUNK = MiB
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
PLATFORMS: tuple[tuple[str, str, str | None], ...] = (
    ("linux", "amd64", None),
    ("linux", "arm64", None),
    ("linux", "arm", "v7"),
    ("linux", "ppc64le", None),
    ("linux", "s390x", None),
    ("linux", "riscv64", None),
)


@dataclass(frozen=True)
class CorpusSpec:
    """The corpus parameters; the same spec always yields byte-identical blobs and manifests."""

    repos: int = 20
    tags: int = 3
    platforms: int = 3
    base_mb: float = 16
    app_mb: float = 4
    seed: str = "mirrord-bench-1"
    prefix: str = "bench"
    #: False: each tag is its platform-0 image manifest itself, no index over it (``platforms`` must
    #: be 1); the many-tags scenarios use it for tiny single-manifest images.
    index: bool = True

    def __post_init__(self) -> None:
        # Sizes are floats whatever the caller passed, so 16 and 16.0 name the same corpus (key()).
        object.__setattr__(self, "base_mb", float(self.base_mb))
        object.__setattr__(self, "app_mb", float(self.app_mb))
        if not 1 <= self.platforms <= len(PLATFORMS):
            raise ValueError(f"platforms must be 1..{len(PLATFORMS)}")
        if self.repos < 1 or self.tags < 1 or self.base_mb < 0 or self.app_mb < 0:
            raise ValueError("repos and tags must be >= 1, sizes >= 0")
        if not self.index and self.platforms != 1:
            raise ValueError("a corpus without indexes has exactly one platform")

    def key(self) -> str:
        """A short stable name for this spec (used to cache a seeded source registry)."""
        fields = asdict(self)
        if self.index:
            del fields["index"]  # the default: keys of sources seeded before the field existed stay
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def repo_names(self) -> list[str]:
        """Repository names, in order."""
        return [f"{self.prefix}/app-{r:03d}" for r in range(self.repos)]

    def tag_names(self) -> list[str]:
        """Tag names, in order (oldest first)."""
        return [f"1.{i}.0" for i in range(self.tags)]


@dataclass(frozen=True)
class LayerKey:
    """Names one layer's content: ``key`` seeds the bytes, ``size`` is the payload length."""

    key: str
    size: int


def base_layer(spec: CorpusSpec, platform: int) -> LayerKey:
    """The base layer of ``PLATFORMS[platform]``, shared by all repositories."""
    return LayerKey(f"base/{_platform_name(platform)}", int(spec.base_mb * MiB))


def app_layer(spec: CorpusSpec, repo: str, platform: int, tag_index: int) -> LayerKey:
    """The app layer new in tag ``tag_index`` of ``repo`` on ``PLATFORMS[platform]``."""
    return LayerKey(f"app/{repo}/{_platform_name(platform)}/{tag_index}", int(spec.app_mb * MiB))


def image_layers(spec: CorpusSpec, repo: str, platform: int, tag_index: int) -> list[LayerKey]:
    """The layers of one platform manifest, bottom first (see the module docstring)."""
    layers = [base_layer(spec, platform)] if spec.base_mb > 0 else []
    if spec.app_mb > 0:
        if tag_index > 0:
            layers.append(app_layer(spec, repo, platform, tag_index - 1))
        layers.append(app_layer(spec, repo, platform, tag_index))
    return layers


def _platform_name(platform: int) -> str:
    os_, arch, variant = PLATFORMS[platform]
    return "-".join(p for p in (os_, arch, variant) if p)


class LayerStream:
    """Iterates the gzip bytes of a layer in chunks; after exhaustion ``digest``, ``diff_id`` and
    ``size`` describe what was produced (so a push can hash while it streams, in one pass)."""

    def __init__(self, seed: str, layer: LayerKey) -> None:
        self._seed = seed
        self._layer = layer
        self.digest = ""
        self.diff_id = ""
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        compressed, plain = hashlib.sha256(), hashlib.sha256()
        gz = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: gzip container, mtime 0
        size = 0
        for piece in _tar_pieces(self._seed, self._layer):
            plain.update(piece)
            out = gz.compress(piece)
            if out:
                compressed.update(out)
                size += len(out)
                yield out
        tail = gz.flush()
        compressed.update(tail)
        size += len(tail)
        yield tail
        self.digest, self.diff_id, self.size = (
            "sha256:" + compressed.hexdigest(),
            "sha256:" + plain.hexdigest(),
            size,
        )


def _tar_pieces(seed: str, layer: LayerKey) -> Iterator[bytes]:
    info = tarfile.TarInfo(layer.key.replace("/", "_") + ".bin")
    info.size, info.mtime, info.mode = layer.size, 0, 0o644
    yield info.tobuf(format=tarfile.USTAR_FORMAT)
    rng = random.Random(f"{seed}/{layer.key}")
    left = layer.size
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n
    pad = -layer.size % tarfile.BLOCKSIZE
    yield b"\0" * (pad + 2 * tarfile.BLOCKSIZE)


def layer_descriptor(seed: str, layer: LayerKey) -> dict[str, Any]:
    """Digest, diff_id and size of a layer, computed by generating it (no upload)."""
    stream = LayerStream(seed, layer)
    for _ in stream:
        pass
    return {"digest": stream.digest, "diff_id": stream.diff_id, "size": stream.size}


def config_bytes(spec: CorpusSpec, repo: str, tag: str, platform: int, diff_ids: Iterable[str]) -> bytes:
    """The image config of one platform manifest (valid OCI config; labels make it unique)."""
    os_, arch, variant = PLATFORMS[platform]
    config: dict[str, Any] = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": os_,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/app"],
            "Labels": {"bench.repo": repo, "bench.tag": tag, "bench.seed": spec.seed},
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if variant:
        config["variant"] = variant
    return _canonical(config)


def manifest_bytes(config: dict[str, Any], layers: Iterable[dict[str, Any]]) -> bytes:
    """An OCI image manifest over descriptors ``config`` and ``layers`` (dicts with digest, size)."""
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config["digest"], "size": config["size"]},
            "layers": [
                {"mediaType": OCI_LAYER_GZIP, "digest": d["digest"], "size": d["size"]} for d in layers
            ],
        }
    )


def index_bytes(children: Iterable[tuple[int, str, int]]) -> bytes:
    """An OCI index over ``(platform, digest, size)`` manifests."""
    manifests = []
    for platform, digest, size in children:
        os_, arch, variant = PLATFORMS[platform]
        plat = {"architecture": arch, "os": os_} | ({"variant": variant} if variant else {})
        manifests.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": plat})
    return _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Corpus:
    """What was seeded: per repository its tags (tag -> index digest), blobs and referenced bytes.

    ``blobs`` maps every distinct blob digest (layers and configs) to its size; ``repo_blobs`` lists the
    blobs each repository references; ``referenced`` is the bytes of blobs each repository's tags
    reference, counting a blob once per manifest that names it (what a per-image copier moves).
    """

    spec: CorpusSpec
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    repo_blobs: dict[str, list[str]] = field(default_factory=dict)
    referenced: dict[str, int] = field(default_factory=dict)
    manifests: dict[str, int] = field(default_factory=dict)

    def subset(self, repos: int) -> list[str]:
        """The first ``repos`` repository names."""
        return self.spec.repo_names()[:repos]

    def unique_bytes(self, repos: Iterable[str]) -> int:
        """Bytes of the distinct blobs ``repos`` reference."""
        return sum(self.blobs[d] for d in self.distinct_blobs(repos))

    def distinct_blobs(self, repos: Iterable[str]) -> dict[str, str]:
        """Distinct blob digest -> the first of ``repos`` that references it."""
        seen: dict[str, str] = {}
        for repo in repos:
            for digest in self.repo_blobs[repo]:
                seen.setdefault(digest, repo)
        return seen

    def referenced_bytes(self, repos: Iterable[str]) -> int:
        """Blob bytes referenced by the tags of ``repos``, once per manifest."""
        return sum(self.referenced[r] for r in repos)

    def tag_count(self, repos: Iterable[str]) -> int:
        """How many tags ``repos`` have."""
        return sum(len(self.tags[r]) for r in repos)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (read back with :meth:`from_json`)."""
        return {"spec": asdict(self.spec)} | {
            k: getattr(self, k) for k in ("tags", "blobs", "repo_blobs", "referenced", "manifests")
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Corpus:
        """The inverse of :meth:`to_json`."""
        return cls(spec=CorpusSpec(**data["spec"]), **{k: v for k, v in data.items() if k != "spec"})
