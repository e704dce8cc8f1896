"""OCI image layout directories as a Repository: unit tests, then integration tests with skopeo and
oci-image-tool (real tools, marked ``integration``)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import tarfile
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.core.events import BytesTransferred, Event, EventBus
from mirrord.core.files import AtomicWriter
from mirrord.oci import Digest, ImageIndex, ImageManifest
from mirrord.oci.errors import InvalidReference
from mirrord.oci.mediatypes import DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST
from mirrord.registry.errors import (
    DigestMismatch,
    NotFound,
    ProtocolError,
    RegistryError,
    RequestRejected,
)
from mirrord.registry.hub import Registries
from mirrord.registry.layout import REF_NAME_ANNOTATION, LayoutRepository, parse_layout_reference
from mirrord.testing.sample import KINDS, push_sample, sample_image
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import ToolError, oci_image_tool_validate, skopeo, skopeo_inspect_raw

# -- building a small image ------------------------------------------------------------------------


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A reproducible gzip tar layer and its diff_id (sha256 of the uncompressed tar)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = buffer.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


@dataclass
class Image:
    """An OCI index over per-platform manifests, with every blob's bytes."""

    index: bytes
    manifests: list[bytes]
    blobs: dict[Digest, bytes] = field(default_factory=dict)

    @property
    def index_digest(self) -> Digest:
        return Digest.of(self.index)


def _platform_image(os_name: str, arch: str, blobs: dict[Digest, bytes]) -> bytes:
    layer, diff_id = _layer({"etc/platform": f"{os_name}/{arch}\n".encode(), "hello.txt": b"hello\n"})
    config = _canonical(
        {
            "architecture": arch,
            "os": os_name,
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "mirrord test"}],
        }
    )
    blobs[Digest.of(layer)] = layer
    blobs[Digest.of(config)] = config
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, config),
            "layers": [_descriptor(OCI_LAYER_GZIP, layer)],
        }
    )


def make_image(platforms: Iterable[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64"))) -> Image:
    """A multi-platform OCI image: index -> manifests -> config + one gzip layer each."""
    blobs: dict[Digest, bytes] = {}
    manifests = [_platform_image(os_name, arch, blobs) for os_name, arch in platforms]
    entries = [
        _descriptor(OCI_MANIFEST, raw, platform={"os": os_name, "architecture": arch})
        for raw, (os_name, arch) in zip(manifests, platforms, strict=True)
    ]
    index = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return Image(index=index, manifests=manifests, blobs=blobs)


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def put_image(repo: LayoutRepository, image: Image, tag: str) -> None:
    """Blobs, then manifests by digest, then the index under ``tag`` (the engine's push order)."""
    for digest, data in image.blobs.items():
        await repo.blob_put(digest, len(data), _chunks(data, 4096))
    for raw in image.manifests:
        await repo.manifest_put(str(Digest.of(raw)), raw, OCI_MANIFEST)
    await repo.manifest_put(tag, image.index, OCI_INDEX)


async def _read_into(repo: LayoutRepository, digest: Digest, received: list[bytes]) -> None:
    async with repo.blob_open(digest) as stream:
        async for chunk in stream:
            received.append(chunk)


async def read_blob(repo: LayoutRepository, digest: Digest, offset: int = 0) -> bytes:
    async with repo.blob_open(digest, offset=offset) as stream:
        return b"".join([chunk async for chunk in stream])


def index_json(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((path / "index.json").read_bytes())
    return result


def blob_files(path: Path) -> list[Path]:
    """Every file below ``path`` except the layout's own oci-layout and index.json."""
    return [p for p in path.rglob("*") if p.is_file() and p.name not in ("oci-layout", "index.json")]


def temp_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.name.endswith(".tmp")]


# -- parse_layout_reference ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "tag"),
    [
        ("oci:/srv/x", "/srv/x", None),
        ("oci:/srv/x:1.0", "/srv/x", "1.0"),
        ("oci:relative/dir:latest", "relative/dir", "latest"),
        ("oci:/srv/a:b:v2", "/srv/a:b", "v2"),
        ("oci:/srv/x:", "/srv/x:", None),
        ("oci::tag", ":tag", None),
        ("oci:/srv/x:bad/tag", "/srv/x:bad/tag", None),
        ("oci:/srv/x:-bad", "/srv/x:-bad", None),
        ("oci:/srv/x:" + "a" * 129, "/srv/x:" + "a" * 129, None),
        ("oci:/srv/x:" + "a" * 128, "/srv/x", "a" * 128),
    ],
)
def test_parse_layout_reference(text: str, path: str, tag: str | None) -> None:
    assert parse_layout_reference(text) == (Path(path), tag)


@pytest.mark.parametrize("text", ["oci:", "/srv/x", "docker.io/library/nginx", "OCI:/srv/x"])
def test_parse_layout_reference_rejects(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_layout_reference(text)


# -- identity and empty layouts --------------------------------------------------------------------


async def test_identity(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path / "x")
    assert repo.registry_key == "oci:" + str((tmp_path / "x").resolve())
    assert repo.name == str(tmp_path / "x")
    assert str(repo) == "oci:" + str(tmp_path / "x")
    assert (await repo.blob_mount(Digest.of(b"x"), "elsewhere")).mounted is False
    assert await repo.referrers(Digest.of(b"x")) is None


async def test_missing_directory_reads_as_empty_and_is_not_created(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path / "missing")
    digest = Digest.of(b"nothing")
    assert await repo.tags_list() == []
    with pytest.raises(NotFound, match="no OCI layout here"):
        await repo.tags_list(must_exist=True)
    assert await repo.has_tags() is False
    assert await repo.manifest_head("latest") is None
    assert await repo.manifest_head(str(digest)) is None
    assert await repo.blob_head(digest) is None
    with pytest.raises(NotFound):
        await repo.manifest_get("latest")
    with pytest.raises(NotFound):
        await read_blob(repo, digest)
    with pytest.raises(NotFound):
        await repo.manifest_delete("latest")
    assert not (tmp_path / "missing").exists()


# -- blobs -----------------------------------------------------------------------------------------


async def test_blob_put_creates_layout_and_reads_back(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path / "l")
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = Digest.of(data)
    await repo.blob_put(digest, len(data), _chunks(data, 16 * 1024))
    assert json.loads((tmp_path / "l" / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert index_json(tmp_path / "l")["manifests"] == []
    assert (tmp_path / "l" / "blobs" / "sha256" / digest.encoded).read_bytes() == data
    assert await repo.blob_head(digest) == len(data)
    assert await read_blob(repo, digest) == data
    assert await read_blob(repo, digest, offset=1024 * 1024 + 5) == data[1024 * 1024 + 5 :]
    async with repo.blob_open(digest) as stream:
        assert stream.size == len(data)
        sizes = [len(chunk) async for chunk in stream]
    assert max(sizes) == 1024 * 1024
    assert temp_files(tmp_path) == []


async def test_blob_put_of_an_empty_blob(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    await repo.blob_put(Digest.of(b""), 0, _chunks(b""))
    assert await repo.blob_head(Digest.of(b"")) == 0
    assert await read_blob(repo, Digest.of(b"")) == b""


async def test_failing_iterator_leaves_nothing(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    data = os.urandom(3 * 1024 * 1024)

    async def failing() -> AsyncIterator[bytes]:
        yield data[: 2 * 1024 * 1024]  # enough to reach the disk before the failure
        yield data[2 * 1024 * 1024 : 2 * 1024 * 1024 + 10]
        raise ConnectionResetError("source went away")

    with pytest.raises(ConnectionResetError):
        await repo.blob_put(Digest.of(data), len(data), failing())
    assert await repo.blob_head(Digest.of(data)) is None
    assert temp_files(tmp_path) == []
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


async def test_cancelled_put_leaves_nothing(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"x" * (2 * 1024 * 1024)
        started.set()
        await asyncio.sleep(3600)
        yield b""

    task = asyncio.create_task(repo.blob_put(Digest.of(b"y"), 10 * 1024 * 1024, stalls()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert temp_files(tmp_path) == []
    assert await repo.blob_head(Digest.of(b"y")) is None


def test_abort_never_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    writer = AtomicWriter.create(tmp_path / "blob")
    inside, release = threading.Event(), threading.Event()

    def slow_chunks() -> Iterator[bytes]:
        yield b"first"
        inside.set()
        release.wait(10)
        yield b"second"

    thread = threading.Thread(target=writer.write, args=(slow_chunks(),))
    thread.start()
    assert inside.wait(10)
    writer.abort()  # on the event loop in real use: must return while the write holds the file
    assert thread.is_alive()  # returned while the write was still blocked inside it
    assert temp_files(tmp_path) == []
    release.set()
    thread.join(10)
    with pytest.raises(OSError, match="aborted"):
        writer.write([b"more"])
    assert not (tmp_path / "blob").exists()
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "size"),
    [(b"other content", 13), (b"the content", 5), (b"the content", 50)],
    ids=["wrong-digest", "longer-than-size", "shorter-than-size"],
)
async def test_blob_put_mismatch_leaves_nothing(tmp_path: Path, content: bytes, size: int) -> None:
    repo = LayoutRepository(tmp_path)
    digest = Digest.of(b"the content")
    with pytest.raises(DigestMismatch):
        await repo.blob_put(digest, size, _chunks(content))
    assert await repo.blob_head(digest) is None
    assert temp_files(tmp_path) == []


async def test_blob_put_replaces_a_corrupt_blob(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    data = b"good bytes"
    await repo.blob_put(Digest.of(data), len(data), _chunks(data))
    (tmp_path / "blobs" / "sha256" / Digest.of(data).encoded).write_bytes(b"bad bytes!")
    await repo.blob_put(Digest.of(data), len(data), _chunks(data))
    assert await read_blob(repo, Digest.of(data)) == data


async def test_corrupt_blob_fails_at_the_end_of_the_read(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    data = os.urandom(2 * 1024 * 1024 + 3)
    await repo.blob_put(Digest.of(data), len(data), _chunks(data, 1 << 20))
    path = tmp_path / "blobs" / "sha256" / Digest.of(data).encoded
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    received: list[bytes] = []
    with pytest.raises(DigestMismatch):
        await _read_into(repo, Digest.of(data), received)
    assert len(b"".join(received)) == len(data)  # every chunk arrived; the end raised
    # A resumed read is verified by the caller that holds the hasher, not here.
    assert len(await read_blob(repo, Digest.of(data), offset=10)) == len(data) - 10


async def test_unverifiable_algorithm_is_refused(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    digest = Digest.parse("md5:0123abcd")
    with pytest.raises(RequestRejected):
        await repo.blob_put(digest, 1, _chunks(b"x"))
    assert temp_files(tmp_path) == []


# -- path safety -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        Digest("sha256", "../../../../etc/passwd"),
        Digest("sha256", "/etc/passwd"),
        Digest("..", "x" * 64),
        Digest("sha256/../..", "a" * 64),
        Digest("sha256", "A" * 64),
    ],
    ids=["dotdot-hex", "absolute-hex", "dotdot-alg", "slash-alg", "uppercase"],
)
async def test_bad_digests_never_become_paths(tmp_path: Path, digest: Digest) -> None:
    repo = LayoutRepository(tmp_path / "l")
    with pytest.raises(RequestRejected):
        await repo.blob_head(digest)
    with pytest.raises(RequestRejected):
        await repo.blob_put(digest, 1, _chunks(b"x"))
    with pytest.raises(RequestRejected):
        await read_blob(repo, digest)
    assert blob_files(tmp_path) == []


@pytest.mark.parametrize(
    "reference", ["../escape", "sha256:../../etc/passwd", "a/b", ".hidden", "", "sha256:" + "0" * 63]
)
async def test_bad_references_are_rejected(tmp_path: Path, reference: str) -> None:
    repo = LayoutRepository(tmp_path)
    raw = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    with pytest.raises(RequestRejected):
        await repo.manifest_put(reference, raw, OCI_INDEX)
    with pytest.raises(RequestRejected):
        await repo.manifest_get(reference)
    assert blob_files(tmp_path) == []


async def test_symlinked_blobs_directory_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sha256").mkdir(parents=True)
    secret = b"not yours"
    (outside / "sha256" / Digest.of(secret).encoded).write_bytes(secret)
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "blobs").symlink_to(outside, target_is_directory=True)
    repo = LayoutRepository(layout)
    with pytest.raises(RequestRejected):
        await repo.blob_head(Digest.of(secret))
    with pytest.raises(RequestRejected):
        await read_blob(repo, Digest.of(secret))
    with pytest.raises(RequestRejected):
        await repo.blob_put(Digest.of(b"new"), 3, _chunks(b"new"))
    assert sorted(p.name for p in (outside / "sha256").iterdir()) == [Digest.of(secret).encoded]


async def test_symlinked_blob_file_outside_is_refused(tmp_path: Path) -> None:
    secret = b"not yours either"
    (tmp_path / "secret").write_bytes(secret)
    repo = LayoutRepository(tmp_path / "layout")
    await repo.blob_put(Digest.of(b"x"), 1, _chunks(b"x"))
    (tmp_path / "layout" / "blobs" / "sha256" / Digest.of(secret).encoded).symlink_to(tmp_path / "secret")
    with pytest.raises(RequestRejected):
        await read_blob(repo, Digest.of(secret))


# -- manifests and index.json ----------------------------------------------------------------------


async def test_put_image_writes_blobs_and_a_tagged_index_entry(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    image = make_image()
    await put_image(repo, image, "v1")
    assert index_json(tmp_path)["manifests"] == [
        {
            "mediaType": OCI_INDEX,
            "digest": str(image.index_digest),
            "size": len(image.index),
            "annotations": {REF_NAME_ANNOTATION: "v1"},
        }
    ]
    for raw in [image.index, *image.manifests, *image.blobs.values()]:
        assert (tmp_path / "blobs" / "sha256" / Digest.of(raw).encoded).read_bytes() == raw
    assert await repo.tags_list() == ["v1"]
    assert await repo.has_tags() is True

    by_tag = await repo.manifest_get("v1")
    assert isinstance(by_tag, ImageIndex)
    assert (by_tag.raw, by_tag.digest, by_tag.media_type) == (image.index, image.index_digest, OCI_INDEX)
    child = await repo.manifest_get(str(Digest.of(image.manifests[0])))
    assert isinstance(child, ImageManifest)
    assert child.raw == image.manifests[0]
    assert child.media_type == OCI_MANIFEST

    head = await repo.manifest_head("v1")
    assert head is not None
    assert (head.digest, head.size, head.media_type) == (image.index_digest, len(image.index), OCI_INDEX)
    head = await repo.manifest_head(str(Digest.of(image.manifests[1])))
    assert head is not None
    assert (head.media_type, head.size) == (OCI_MANIFEST, len(image.manifests[1]))
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_every_sample_kind_round_trips(tmp_path: Path, kind: str) -> None:
    image = sample_image("layout", kind=kind)
    repo = LayoutRepository(tmp_path)
    await push_sample(repo, image, "t")
    root = await repo.manifest_get("t")
    assert (root.raw, root.media_type) == (image.root.raw, image.root.media_type)
    for manifest in image.manifests:
        got = await repo.manifest_get(str(manifest.digest))
        assert (got.raw, got.media_type) == (manifest.raw, manifest.media_type)
        head = await repo.manifest_head(str(manifest.digest))
        assert head is not None
        assert (head.media_type, head.size) == (manifest.media_type, len(manifest.raw))
    for digest, data in image.blobs.items():
        assert await read_blob(repo, digest) == data


async def test_a_tagged_docker_manifest_is_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = sample_image("layout", kind="docker-list")
    repo = LayoutRepository(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mirrord.registry.layout.repository"):
        await push_sample(repo, image, "t")
        await repo.manifest_put("u", image.root.raw, image.root.media_type)
    assert [r.getMessage() for r in caplog.records if "docker media type" in r.getMessage()] != []
    assert len(caplog.records) == 1  # once per layout object
    assert index_json(tmp_path)["manifests"][0]["mediaType"] == DOCKER_MANIFEST_LIST


async def test_digest_only_put_writes_the_blob_only(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    image = make_image()
    for digest, data in image.blobs.items():
        await repo.blob_put(digest, len(data), _chunks(data))
    digest = await repo.manifest_put(str(Digest.of(image.manifests[0])), image.manifests[0], OCI_MANIFEST)
    assert digest == Digest.of(image.manifests[0])
    assert index_json(tmp_path)["manifests"] == []
    assert await repo.tags_list() == []


async def test_tag_replace_keeps_one_entry_per_tag(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    old, new = make_image((("linux", "amd64"),)), make_image((("linux", "s390x"),))
    await put_image(repo, old, "stable")
    await put_image(repo, old, "v1")
    await put_image(repo, new, "stable")
    entries = index_json(tmp_path)["manifests"]
    assert [(e["annotations"][REF_NAME_ANNOTATION], e["digest"]) for e in entries] == [
        ("stable", str(new.index_digest)),
        ("v1", str(old.index_digest)),
    ]
    assert (await repo.manifest_get("stable")).digest == new.index_digest
    assert (await repo.manifest_get("v1")).digest == old.index_digest
    await put_image(repo, new, "stable")
    assert len(index_json(tmp_path)["manifests"]) == 2


async def test_untagged_entry_of_the_same_digest_is_replaced(tmp_path: Path) -> None:
    image = make_image((("linux", "amd64"),))
    repo = LayoutRepository(tmp_path)
    await put_image(repo, image, "a")
    index = index_json(tmp_path)
    index["manifests"][0]["annotations"] = {"other": "kept only in the untagged entry"}
    (tmp_path / "index.json").write_text(json.dumps(index))
    await repo.manifest_put("b", image.index, OCI_INDEX)
    assert [e["annotations"] for e in index_json(tmp_path)["manifests"]] == [{REF_NAME_ANNOTATION: "b"}]


async def test_index_json_keeps_foreign_fields_and_entries(tmp_path: Path) -> None:
    image = make_image((("linux", "amd64"),))
    repo = LayoutRepository(tmp_path)
    await put_image(repo, image, "a")
    index = index_json(tmp_path)
    index["annotations"] = {"created-by": "someone else"}
    index["manifests"].append({**index["manifests"][0], "annotations": {"x": "y"}, "platform": {"os": "z"}})
    (tmp_path / "index.json").write_text(json.dumps(index))
    await repo.manifest_put("b", image.manifests[0], OCI_MANIFEST)
    after = index_json(tmp_path)
    assert after["annotations"] == {"created-by": "someone else"}
    assert after["manifests"][:2] == index["manifests"]
    assert after["manifests"][2]["annotations"] == {REF_NAME_ANNOTATION: "b"}


async def test_tags_list_skips_entries_that_are_not_tags(tmp_path: Path) -> None:
    image = make_image((("linux", "amd64"),))
    repo = LayoutRepository(tmp_path)
    await put_image(repo, image, "ok")
    index = index_json(tmp_path)
    entry = index["manifests"][0]
    index["manifests"] += [
        {**entry, "annotations": {REF_NAME_ANNOTATION: "docker.io/library/x:1"}},
        {**entry, "annotations": {}},
        {key: value for key, value in entry.items() if key != "annotations"},
        {**entry, "annotations": {REF_NAME_ANNOTATION: "ok"}},
    ]
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert await repo.tags_list() == ["ok"]


async def test_manifest_put_requires_children(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    image = make_image()
    with pytest.raises(RequestRejected) as caught:
        await repo.manifest_put("v1", image.index, OCI_INDEX)
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
    with pytest.raises(RequestRejected):
        await repo.manifest_put(str(Digest.of(image.manifests[0])), image.manifests[0], OCI_MANIFEST)
    assert await repo.tags_list() == []
    assert await repo.manifest_head(str(image.index_digest)) is None


async def test_manifest_put_checks_a_digest_reference(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    raw = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    with pytest.raises(DigestMismatch):
        await repo.manifest_put(str(Digest.of(b"something else")), raw, OCI_INDEX)
    assert await repo.manifest_put(str(Digest.of(raw)), raw, OCI_INDEX) == Digest.of(raw)


async def test_manifest_put_rejects_what_is_not_a_manifest(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    with pytest.raises(RequestRejected):
        await repo.manifest_put("v1", b"not json", OCI_MANIFEST)
    assert await repo.tags_list() == []


async def test_corrupt_manifest_blob_is_detected(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    image = make_image()
    await put_image(repo, image, "v1")
    (tmp_path / "blobs" / "sha256" / image.index_digest.encoded).write_bytes(image.index + b" ")
    with pytest.raises(DigestMismatch):
        await repo.manifest_get("v1")
    with pytest.raises(DigestMismatch):
        await repo.manifest_get(str(image.index_digest))


async def test_a_layer_is_not_a_manifest(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    image = make_image((("linux", "amd64"),))
    await put_image(repo, image, "v1")
    layer = next(d for d, data in image.blobs.items() if data[:2] == b"\x1f\x8b")
    assert await repo.manifest_head(str(layer)) is None
    with pytest.raises(NotFound):
        await repo.manifest_get(str(layer))


async def test_tag_whose_blob_is_missing_reads_as_absent(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    image = make_image((("linux", "amd64"),))
    await put_image(repo, image, "v1")
    (tmp_path / "blobs" / "sha256" / image.index_digest.encoded).unlink()
    assert await repo.manifest_head("v1") is None
    with pytest.raises(NotFound):
        await repo.manifest_get("v1")


async def test_broken_index_json_is_a_protocol_error(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{not json")
    repo = LayoutRepository(tmp_path)
    with pytest.raises(ProtocolError):
        await repo.tags_list()
    (tmp_path / "index.json").write_text('{"manifests": {}}')
    with pytest.raises(ProtocolError):
        await repo.manifest_head("v1")


async def test_unsupported_layout_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "9.9.9"}')
    with pytest.raises(ProtocolError):
        await LayoutRepository(tmp_path).blob_put(Digest.of(b"x"), 1, _chunks(b"x"))


async def test_disk_errors_are_registry_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a directory")
    repo = LayoutRepository(tmp_path / "file")
    with pytest.raises(RegistryError, match="oci:"):
        await repo.blob_put(Digest.of(b"x"), 1, _chunks(b"x"))
    with pytest.raises(RegistryError):
        await repo.tags_list()


async def test_manifest_delete(tmp_path: Path) -> None:
    repo = LayoutRepository(tmp_path)
    image = make_image((("linux", "amd64"),))
    await put_image(repo, image, "a")
    await repo.manifest_put("b", image.index, OCI_INDEX)
    await repo.manifest_put("c", image.manifests[0], OCI_MANIFEST)
    await repo.manifest_delete("c")
    assert await repo.tags_list() == ["a", "b"]
    await repo.manifest_delete(str(image.index_digest))
    assert await repo.tags_list() == []
    with pytest.raises(NotFound):
        await repo.manifest_delete("a")
    await repo.manifest_delete(str(image.index_digest))  # the blob stays (no garbage collection)
    with pytest.raises(NotFound):
        await repo.manifest_delete(str(Digest.of(b"never there")))


async def test_concurrent_puts_of_different_tags_all_land(tmp_path: Path) -> None:
    image = make_image((("linux", "amd64"),))
    await put_image(LayoutRepository(tmp_path), image, "base")
    repos = [LayoutRepository(tmp_path), LayoutRepository(tmp_path)]  # the lock is per directory
    tags = [f"t{i}" for i in range(40)]
    async with asyncio.TaskGroup() as group:
        for i, tag in enumerate(tags):
            raw = image.manifests[0] if i % 2 else image.index
            group.create_task(repos[i % 2].manifest_put(tag, raw, OCI_MANIFEST if i % 2 else OCI_INDEX))
    assert sorted(await repos[0].tags_list()) == sorted(["base", *tags])
    assert len(index_json(tmp_path)["manifests"]) == 41
    assert temp_files(tmp_path) == []


_REPO_ROOT = str(Path(__file__).resolve().parents[2])
_TAGGER = """
import asyncio, sys
from pathlib import Path
from mirrord.registry.layout import LayoutRepository
async def main() -> None:
    repo = LayoutRepository(Path(sys.argv[1]))
    raw = Path(sys.argv[2]).read_bytes()
    async with asyncio.TaskGroup() as group:
        for i in range(25):
            group.create_task(repo.manifest_put(f"{sys.argv[3]}{i}", raw, sys.argv[4]))
asyncio.run(main())
"""


async def test_processes_writing_one_layout_lose_no_tag(tmp_path: Path) -> None:
    image = make_image((("linux", "amd64"),))
    layout = tmp_path / "l"
    await put_image(LayoutRepository(layout), image, "base")
    (tmp_path / "index").write_bytes(image.index)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _TAGGER,
            str(layout),
            str(tmp_path / "index"),
            prefix,
            OCI_INDEX,
            env={**os.environ, "PYTHONPATH": _REPO_ROOT},
        )
        for prefix in ("a", "b", "c")
    ]
    assert [await p.wait() for p in procs] == [0, 0, 0]
    assert len(await LayoutRepository(layout).tags_list()) == 1 + 3 * 25


async def test_bytes_transferred_events(tmp_path: Path) -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    repo = LayoutRepository(tmp_path, events=bus)
    data = os.urandom(2 * 1024 * 1024 + 1)
    await repo.blob_put(Digest.of(data), len(data), _chunks(data, 64 * 1024))
    await read_blob(repo, Digest.of(data))
    moved = [e for e in seen if isinstance(e, BytesTransferred)]
    assert {e.registry for e in moved} == {"oci"}
    assert sum(e.count for e in moved if e.direction == "pushed") == len(data)
    assert sum(e.count for e in moved if e.direction == "pulled") == len(data)


# -- integration: skopeo and oci-image-tool --------------------------------------------------------


# skopeo 1.9 finds only OCI-typed index.json entries (Docker kinds are mirrord-only, see the
# warning test) and cannot copy an index nested in an index.
SKOPEO_KINDS = [k for k in KINDS if not k.startswith("docker") and k != "nested-index"]


@pytest.mark.integration
@pytest.mark.tools("skopeo")
@pytest.mark.parametrize("kind", SKOPEO_KINDS)
async def test_skopeo_reads_and_copies_every_oci_sample_kind(tmp_path: Path, kind: str) -> None:
    image = sample_image("layout", kind=kind)
    await push_sample(LayoutRepository(tmp_path / "src"), image, "t")
    raw = await asyncio.to_thread(skopeo, "inspect", "--raw", f"oci:{tmp_path / 'src'}:t")
    assert raw.stdout == image.root.raw
    await asyncio.to_thread(skopeo, "copy", "--all", f"oci:{tmp_path / 'src'}:t", f"oci:{tmp_path / 'dst'}:t")
    theirs = LayoutRepository(tmp_path / "dst")
    assert (await theirs.manifest_get("t")).raw == image.root.raw
    for manifest in image.manifests:
        assert (await theirs.manifest_get(str(manifest.digest))).raw == manifest.raw


@pytest.mark.integration
@pytest.mark.tools("skopeo")
async def test_skopeo_reads_the_same_bytes(tmp_path: Path) -> None:
    image = make_image()
    await put_image(LayoutRepository(tmp_path / "src"), image, "v1")
    raw = await asyncio.to_thread(skopeo, "inspect", "--raw", f"oci:{tmp_path / 'src'}:v1")
    assert raw.stdout == image.index
    child = await asyncio.to_thread(
        skopeo, "inspect", "--raw", "--override-arch", "arm64", f"oci:{tmp_path / 'src'}:v1"
    )
    assert child.stdout == image.index  # --raw never resolves the index


@pytest.mark.integration
@pytest.mark.tools("skopeo")
async def test_skopeo_copies_our_layout_and_we_read_its_layout(tmp_path: Path) -> None:
    image = make_image()
    await put_image(LayoutRepository(tmp_path / "src"), image, "v1")
    await asyncio.to_thread(
        skopeo, "copy", "--all", f"oci:{tmp_path / 'src'}:v1", f"oci:{tmp_path / 'dst'}:copied"
    )
    theirs = LayoutRepository(tmp_path / "dst")
    assert await theirs.tags_list() == ["copied"]
    index = await theirs.manifest_get("copied")
    assert isinstance(index, ImageIndex)
    assert (index.raw, index.digest) == (image.index, image.index_digest)
    for raw in image.manifests:
        manifest = await theirs.manifest_get(str(Digest.of(raw)))
        assert manifest.raw == raw
        assert isinstance(manifest, ImageManifest)
        for descriptor in manifest.blobs:
            assert await read_blob(theirs, descriptor.digest) == image.blobs[descriptor.digest]


@pytest.mark.integration
@pytest.mark.tools("skopeo")
async def test_we_read_and_extend_a_single_image_layout_skopeo_wrote(tmp_path: Path) -> None:
    image = make_image()
    await put_image(LayoutRepository(tmp_path / "src"), image, "v1")
    platform = ("--override-os", "linux", "--override-arch", "arm64")
    await asyncio.to_thread(
        skopeo, "copy", *platform, f"oci:{tmp_path / 'src'}:v1", f"oci:{tmp_path / 'dst'}:one"
    )
    theirs = LayoutRepository(tmp_path / "dst")
    assert await theirs.tags_list() == ["one"]
    manifest = await theirs.manifest_get("one")
    assert isinstance(manifest, ImageManifest)
    assert manifest.raw == image.manifests[1]  # arm64, bytes preserved
    head = await theirs.manifest_head("one")
    assert head is not None
    assert (head.digest, head.media_type) == (Digest.of(image.manifests[1]), OCI_MANIFEST)
    # Our write into skopeo's layout (its index.json has no mediaType) stays readable by skopeo.
    await theirs.manifest_put("again", image.manifests[1], OCI_MANIFEST)
    raw = await asyncio.to_thread(skopeo, "inspect", "--raw", f"oci:{tmp_path / 'dst'}:again")
    assert raw.stdout == image.manifests[1]
    assert await theirs.tags_list() == ["one", "again"]


@pytest.mark.integration
@pytest.mark.tools("skopeo")
async def test_skopeo_adds_to_our_layout_and_keeps_our_tags(tmp_path: Path) -> None:
    ours = LayoutRepository(tmp_path / "l")
    first, second = make_image(), make_image((("linux", "ppc64le"),))
    await put_image(ours, first, "ours")
    await put_image(LayoutRepository(tmp_path / "other"), second, "x")
    await asyncio.to_thread(
        skopeo, "copy", "--all", f"oci:{tmp_path / 'other'}:x", f"oci:{tmp_path / 'l'}:theirs"
    )
    assert sorted(await ours.tags_list()) == ["ours", "theirs"]
    assert (await ours.manifest_get("theirs")).digest == second.index_digest
    await ours.manifest_put("ours", second.index, OCI_INDEX)
    raw = await asyncio.to_thread(skopeo, "inspect", "--raw", f"oci:{tmp_path / 'l'}:ours")
    assert raw.stdout == second.index


@pytest.mark.integration
@pytest.mark.tools("oci-image-tool")
async def test_oci_image_tool_validates_our_layout(tmp_path: Path) -> None:
    # oci-image-tool 1.0.0-rc1 has no `--type imageLayout` ("unimplemented"): `--type image` on a
    # directory autodetects an image layout. It checks the layout files and every blob's digest
    # but cannot follow an index ("unknown media type" warning), so a single-manifest tag is
    # validated as well as the index tag.
    image = make_image()
    layout = tmp_path / "l"
    repo = LayoutRepository(layout)
    await put_image(repo, image, "multi")
    await repo.manifest_put("single", image.manifests[0], OCI_MANIFEST)
    for tag in ("multi", "single"):
        await asyncio.to_thread(oci_image_tool_validate, layout, tag)
    # The control: the tool does reject a layout with a corrupt layer.
    layer = next(d for d, data in image.blobs.items() if data[:2] == b"\x1f\x8b")
    await asyncio.to_thread((layout / "blobs" / "sha256" / layer.encoded).write_bytes, b"corrupt")
    with pytest.raises(ToolError):
        await asyncio.to_thread(oci_image_tool_validate, layout, "single")


@pytest.mark.integration
@pytest.mark.tools("skopeo", "oci-image-tool")
async def test_engine_round_trip_layout_registry_layout(
    plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    """Layout -> real registry -> layout through the copy engine: bytes and digests survive, the
    result validates and skopeo copies it, and a second pass finds it unchanged."""
    image = make_image()
    source = LayoutRepository(tmp_path / "src")
    await put_image(source, image, "v1")
    async with Registries({plain_registry.host: plain_registry.settings()}) as hub:
        remote = hub.open(plain_registry.ref(unique_repo))[0]
        back = LayoutRepository(tmp_path / "back")
        engine = CopyEngine()
        up = await engine.copy(CopyRequest(source=source, reference="v1", targets=(Target(remote, "v1"),)))
        assert up.outcome == "copied", up.error
        down = await engine.copy(CopyRequest(source=remote, reference="v1", targets=(Target(back, "v1"),)))
        assert down.outcome == "copied", down.error
        again = await engine.copy(CopyRequest(source=remote, reference="v1", targets=(Target(back, "v1"),)))
        assert again.outcome == "unchanged", again.error
    assert await asyncio.to_thread(skopeo_inspect_raw, plain_registry, f"{unique_repo}:v1") == image.index
    assert (await back.manifest_get("v1")).raw == image.index
    assert sorted(await back.tags_list()) == ["v1"]
    await asyncio.to_thread(oci_image_tool_validate, tmp_path / "back", "v1")
    await asyncio.to_thread(
        skopeo, "copy", "--all", f"oci:{tmp_path / 'back'}:v1", f"oci:{tmp_path / 'again'}:v1"
    )
    assert (await LayoutRepository(tmp_path / "again").manifest_get("v1")).digest == image.index_digest
