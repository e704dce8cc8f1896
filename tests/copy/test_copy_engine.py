"""The copy engine against in-memory registries: shapes, order, verification, dedup, limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from copykit import ATTESTATION, Recorder, layer, push_image, push_index, push_multiarch, until

from mirrord.copy import CopyEngine, CopyRequest, Limits, LocationCache, Target
from mirrord.copy.blobs import SMALL_BLOB
from mirrord.copy.planner import SOURCE_DIGEST_ANNOTATION, SOURCE_PLATFORMS_ANNOTATION
from mirrord.core.events import (
    BytesTransferred,
    EventBus,
    ImageDone,
    ImageFailed,
    ImageStarted,
    ManifestPushed,
)
from mirrord.oci import Digest, ImageIndex, ImageManifest, Platform
from mirrord.registry.errors import RequestRejected, ServerError, TransportError
from mirrord.registry.whole import WholeBlob
from mirrord.testing.memory import MemoryRegistry, MemoryRepository
from mirrord.testing.sample import KINDS, push_sample, sample_image

AMD64 = Platform.parse("linux/amd64")


def request(
    source: MemoryRepository, reference: str, *targets: tuple[MemoryRepository, str | None], **kw: object
) -> CopyRequest:
    return CopyRequest(
        source=source,
        reference=reference,
        targets=tuple(Target(repository=r, tag=t) for r, t in targets),
        **kw,  # type: ignore[arg-type]
    )


def assert_same_content(src: MemoryRepository, dst: MemoryRepository, digest: Digest) -> None:
    """Every manifest under ``digest`` is byte-identical at ``dst``; every blob is linked there."""
    src_manifests = src.registry.manifests[src.name]
    dst_manifests = dst.registry.manifests[dst.name]
    assert dst_manifests[digest].raw == src_manifests[digest].raw
    obj = json.loads(src_manifests[digest].raw)
    for child in obj.get("manifests", []):
        assert_same_content(src, dst, Digest.parse(child["digest"]))
    for blob in [obj["config"], *obj["layers"]] if "config" in obj else []:
        assert Digest.parse(blob["digest"]) in dst.registry.links[dst.name]


@pytest.fixture
def source() -> MemoryRegistry:
    return MemoryRegistry("src.example")


@pytest.fixture
def target() -> MemoryRegistry:
    return MemoryRegistry("dst.example")


# -- shapes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("docker", [False, True])
async def test_single_image_is_copied_byte_for_byte(
    source: MemoryRegistry, target: MemoryRegistry, docker: bool
) -> None:
    src, dst = source.repository("app"), target.repository("mirror/app")
    image = await push_image(src, [layer("a", 3000), layer("b", 500)], tag="v1", docker=docker)
    bus = EventBus()
    seen = Recorder(bus)

    result = await CopyEngine(events=bus).copy(request(src, "v1", (dst, "v1")))

    assert result.outcome == "copied", result.error
    assert result.source_digest == image.digest
    assert result.target_digests == {"dst.example/mirror/app": image.digest}
    assert result.digest_map == {}
    assert result.bytes == sum(b.size for b in image.blobs)
    assert target.tags["mirror/app"]["v1"] == image.digest
    assert_same_content(src, dst, image.digest)
    assert seen.blob_outcomes() == {"copied": 3}
    assert [type(e) for e in seen.events if isinstance(e, ImageStarted | ImageDone)] == [
        ImageStarted,
        ImageDone,
    ]


@pytest.mark.parametrize("docker", [False, True])
async def test_index_with_attestations_is_copied_whole(
    source: MemoryRegistry, target: MemoryRegistry, docker: bool
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    amd = await push_image(src, [layer("amd")], docker=docker)
    arm = await push_image(src, [layer("arm")], docker=docker)
    entries: list[tuple[ImageManifest | ImageIndex, str | None, dict[str, str] | None]] = [
        (amd, "linux/amd64", None),
        (arm, "linux/arm64/v8", None),
    ]
    if not docker:
        att = await push_image(src, [layer("att", 10)])
        entries.append(
            (att, "unknown/unknown", {**ATTESTATION, "vnd.docker.reference.digest": str(amd.digest)})
        )
    index = await push_index(src, entries, tag="latest", docker=docker)

    result = await CopyEngine().copy(request(src, "latest", (dst, "latest")))

    assert result.outcome == "copied", result.error
    assert result.target_digests["dst.example/app"] == index.digest
    assert_same_content(src, dst, index.digest)


async def test_nested_index_is_copied_children_first(source: MemoryRegistry, target: MemoryRegistry) -> None:
    src, dst = source.repository("app"), target.repository("app")
    inner = await push_multiarch(src, "inner")
    other = await push_image(src, [layer("s390x")])
    outer = await push_index(src, [(inner, None, None), (other, "linux/s390x", None)], tag="nested")
    order: list[str] = []

    async def hook(method: str, repository: str, reference: str) -> None:
        if method == "manifest_put":
            order.append(reference)

    target.faults.hook = hook
    result = await CopyEngine().copy(request(src, "nested", (dst, "nested")))

    assert result.outcome == "copied", result.error
    assert_same_content(src, dst, outer.digest)
    # The root goes last, by its tag only: one PUT stores it and tags it.
    assert order[-1] == "nested"
    assert str(outer.digest) not in order
    assert order.index(str(inner.digest)) > max(order.index(str(d.digest)) for d in inner.manifests)


async def test_push_by_digest_only_writes_no_tag_and_skips_source_head(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    image = await push_image(src, [layer("a")])
    source.reset_calls()

    result = await CopyEngine().copy(request(src, str(image.digest), (dst, None)))

    assert result.outcome == "copied", result.error
    assert "manifest_head" not in src.calls
    assert target.tags.get("app", {}) == {}
    assert image.digest in target.manifests["app"]


async def test_foreign_layers_are_skipped_unless_asked_for(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("win"), target.repository("win")
    image = await push_image(src, [layer("a")], foreign=[layer("windows-base")], tag="1", docker=True)
    foreign = Digest.of(layer("windows-base"))

    result = await CopyEngine().copy(request(src, "1", (dst, "1")))
    assert result.outcome == "copied", result.error
    assert foreign not in target.links["win"]
    assert target.tags["win"]["1"] == image.digest

    failed = await CopyEngine().copy(request(src, "1", (dst, "2"), include_foreign=True, force=True))
    assert failed.outcome == "failed"
    assert "NotFound" in (failed.error or "")


async def test_missing_source_tag_fails_clearly(source: MemoryRegistry, target: MemoryRegistry) -> None:
    result = await CopyEngine().copy(
        request(source.repository("app"), "nope", (target.repository("app"), "nope"))
    )
    assert result.outcome == "failed"
    assert "NotFound" in (result.error or "")
    assert "nope" in (result.error or "")


# -- platform filter -----------------------------------------------------------------------------------


async def test_platform_filter_keeps_matching_instances_and_their_attestations(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    index = await push_multiarch(src, "1.0", platforms=("linux/amd64", "linux/arm64", "linux/s390x"))
    amd, amd_att = index.manifests[0], index.manifests[1]
    source.reset_calls()

    result = await CopyEngine().copy(request(src, "1.0", (dst, "1.0"), platforms=(AMD64,)))

    assert result.outcome == "copied", result.error
    new = target.tags["app"]["1.0"]
    assert result.digest_map == {index.digest: new}
    assert result.target_digests == {"dst.example/app": new}
    rewritten = await dst.manifest_get(str(new))
    assert isinstance(rewritten, ImageIndex)
    assert [d.digest for d in rewritten.manifests] == [amd.digest, amd_att.digest]
    assert rewritten.manifests[0].raw == amd.raw  # entries keep every field
    assert rewritten.annotations[SOURCE_DIGEST_ANNOTATION] == str(index.digest)
    assert rewritten.annotations[SOURCE_PLATFORMS_ANNOTATION] == "linux/amd64"
    assert set(target.manifests["app"]) == {new, amd.digest, amd_att.digest}
    # Only the kept children were fetched: root + 2.
    assert src.calls["manifest_get"] == 3


async def test_platform_filter_through_nested_indexes(source: MemoryRegistry, target: MemoryRegistry) -> None:
    src, dst = source.repository("app"), target.repository("app")
    inner = await push_multiarch(src, "inner", attestations=False)
    s390x = await push_image(src, [layer("s390x")])
    outer = await push_index(src, [(inner, None, None), (s390x, "linux/s390x", None)], tag="n")

    result = await CopyEngine().copy(request(src, "n", (dst, "n"), platforms=(AMD64,)))

    assert result.outcome == "copied", result.error
    assert set(result.digest_map) == {outer.digest, inner.digest}
    root = await dst.manifest_get("n")
    assert isinstance(root, ImageIndex)
    assert len(root.manifests) == 1
    assert root.manifests[0].digest == result.digest_map[inner.digest]
    new_inner = await dst.manifest_get(str(root.manifests[0].digest))
    assert isinstance(new_inner, ImageIndex)
    assert [d.digest for d in new_inner.manifests] == [inner.manifests[0].digest]


async def test_platform_filter_keeping_everything_preserves_the_digest(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    index = await push_multiarch(src, "1", platforms=("linux/amd64",))
    result = await CopyEngine().copy(request(src, "1", (dst, "1"), platforms=(AMD64,)))
    assert result.outcome == "copied", result.error
    assert result.digest_map == {}
    assert target.tags["app"]["1"] == index.digest


async def test_platform_filter_matching_nothing_fails_without_tag(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    await push_multiarch(src, "1")
    result = await CopyEngine().copy(
        request(src, "1", (dst, "1"), platforms=(Platform.parse("windows/amd64"),))
    )
    assert result.outcome == "failed"
    assert "NoMatchingPlatform" in (result.error or "")
    assert "linux/amd64" in (result.error or "")
    assert "app" not in target.tags


# -- unchanged check -----------------------------------------------------------------------------------


async def test_unchanged_costs_one_head_at_the_source_and_no_get(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    index = await push_multiarch(src, "1")
    assert (await CopyEngine().copy(request(src, "1", (dst, "1")))).outcome == "copied"
    source.reset_calls()
    target.reset_calls()

    result = await CopyEngine().copy(request(src, "1", (dst, "1")))

    assert result.outcome == "unchanged"
    assert result.source_digest == index.digest
    assert result.target_digests == {"dst.example/app": index.digest}
    assert dict(source.calls) == {"manifest_head": 1}
    assert dict(target.calls) == {"manifest_head": 1}
    assert (await CopyEngine().is_unchanged(request(src, "1", (dst, "1")))) == (True, index.digest)


async def test_unchanged_with_a_platform_filter_reads_the_annotation_at_the_target(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    index = await push_multiarch(src, "1")
    first = await CopyEngine().copy(request(src, "1", (dst, "1"), platforms=(AMD64,)))
    assert first.outcome == "copied", first.error
    source.reset_calls()
    target.reset_calls()

    result = await CopyEngine().copy(request(src, "1", (dst, "1"), platforms=(AMD64,)))

    assert result.outcome == "unchanged"
    assert result.source_digest == index.digest
    assert result.target_digests == first.target_digests
    assert dict(source.calls) == {"manifest_head": 1}
    assert dict(target.calls) == {"manifest_head": 1, "manifest_get": 1}

    other = await CopyEngine().copy(request(src, "1", (dst, "1"), platforms=(Platform.parse("linux/arm64"),)))
    assert other.outcome == "copied", "a different filter must not count as unchanged"


async def test_moved_tag_is_copied_again_and_force_skips_the_check(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    await push_image(src, [layer("one")], tag="t")
    await CopyEngine().copy(request(src, "t", (dst, "t")))
    moved = await push_image(src, [layer("two")], tag="t")

    result = await CopyEngine().copy(request(src, "t", (dst, "t")))
    assert result.outcome == "copied"
    assert target.tags["app"]["t"] == moved.digest

    source.reset_calls()
    forced = await CopyEngine().copy(request(src, "t", (dst, "t"), force=True))
    assert forced.outcome == "copied"
    assert "manifest_head" not in source.calls
    assert forced.bytes == 0  # every blob exists at the target


async def test_only_stale_targets_are_copied(source: MemoryRegistry, target: MemoryRegistry) -> None:
    src = source.repository("app")
    done, fresh = target.repository("a"), target.repository("b")
    image = await push_image(src, [layer("x")], tag="1")
    await CopyEngine().copy(request(src, "1", (done, "1")))
    target.reset_calls()

    result = await CopyEngine().copy(request(src, "1", (done, "1"), (fresh, "1")))

    assert result.outcome == "copied", result.error
    assert result.target_digests == {"dst.example/a": image.digest, "dst.example/b": image.digest}
    assert done.calls["manifest_put"] == 0
    assert target.tags["b"]["1"] == image.digest


# -- verification and failures -------------------------------------------------------------------------


async def test_corrupt_blob_fails_only_its_image_and_writes_no_tag(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    good_src, bad_src = source.repository("good"), source.repository("bad")
    good = await push_image(good_src, [layer("fine", 5000)], tag="1")
    bad = await push_image(bad_src, [layer("rotten", 5000), layer("fine-too", 100)], tag="1")
    source.faults.corrupt_blobs.add(Digest.of(layer("rotten", 5000)))
    bus = EventBus()
    seen = Recorder(bus)

    results = await CopyEngine(events=bus).copy_many(
        [
            request(bad_src, "1", (target.repository("bad"), "1")),
            request(good_src, "1", (target.repository("good"), "1")),
        ]
    )

    assert [r.outcome for r in results] == ["failed", "copied"]
    assert "DigestMismatch" in (results[0].error or "")
    assert "bad" not in target.tags
    assert bad.digest not in target.manifests.get("bad", {})
    assert Digest.of(layer("rotten", 5000)) not in target.blobs
    assert target.tags["good"]["1"] == good.digest
    assert [e.source for e in seen.of(ImageFailed)] == ["src.example/bad:1"]


async def test_retryable_upload_failure_is_retried(source: MemoryRegistry, target: MemoryRegistry) -> None:
    src, dst = source.repository("app"), target.repository("app")
    image = await push_image(src, [layer("a", 4000)], tag="1")
    target.faults.fail_calls[("blob_put", 1)] = ServerError("503 from upstream")

    result = await CopyEngine(limits=Limits(retry_backoff=0)).copy(request(src, "1", (dst, "1")))

    assert result.outcome == "copied", result.error
    assert target.tags["app"]["1"] == image.digest
    assert target.calls["blob_put"] == 3  # two blobs, one of them twice


async def test_upload_failing_every_attempt_fails_the_image(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    await push_image(src, [layer("a", 4000)], tag="1")
    for n in range(1, 10):
        target.faults.fail_calls[("blob_put", n)] = ServerError("503 from upstream")

    result = await CopyEngine(limits=Limits(retry_backoff=0, blob_attempts=2)).copy(
        request(src, "1", (dst, "1"))
    )

    assert result.outcome == "failed"
    assert "ServerError" in (result.error or "")
    assert target.calls["blob_put"] <= 4
    assert "app" not in target.tags


async def test_one_failing_target_does_not_block_the_other(source: MemoryRegistry) -> None:
    src = source.repository("app")
    image = await push_image(src, [layer("a", 4000)], tag="1")
    broken, fine = MemoryRegistry("broken.example"), MemoryRegistry("fine.example")
    broken.faults.fail_calls[("blob_put", 1)] = RequestRejected("denied", code="DENIED")
    source.reset_calls()

    result = await CopyEngine().copy(
        request(src, "1", (broken.repository("app"), "1"), (fine.repository("app"), "1"))
    )

    assert result.outcome == "failed"
    assert "broken.example/app" in (result.error or "")
    assert result.target_digests == {"fine.example/app": image.digest}
    assert fine.tags["app"]["1"] == image.digest
    assert "app" not in broken.tags
    assert source.calls["blob_open"] == 2  # one read per blob fed both targets


# -- one read per blob, dedup and mounts ---------------------------------------------------------------


async def test_two_targets_read_the_source_once(source: MemoryRegistry) -> None:
    src = source.repository("app")
    index = await push_multiarch(src, "1", size=200_000)
    source.chunk_size = 4096
    one, two = MemoryRegistry("one.example"), MemoryRegistry("two.example")
    source.reset_calls()

    result = await CopyEngine().copy(
        request(src, "1", (one.repository("app"), "1"), (two.repository("app"), "1"))
    )

    assert result.outcome == "copied", result.error
    blobs = {
        d for m in source.manifests["app"].values() if b'"layers"' in m.raw for d in _blob_digests(m.raw)
    }
    assert source.calls["blob_open"] == len(blobs)
    assert one.calls["blob_put"] == two.calls["blob_put"] == len(blobs)
    assert result.bytes == sum(len(source.blobs[d]) for d in blobs)
    assert one.tags["app"]["1"] == two.tags["app"]["1"] == index.digest


async def test_blob_shared_by_many_repositories_is_read_once_and_uploaded_once(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    shared = layer("debian-base", 50_000)
    repos = [f"team/app{i}" for i in range(5)]
    for name in repos:
        await push_multiarch(source.repository(name), "1", shared=shared, attestations=False)
    source.faults.chunk_delay = 0.001  # keep transfers in flight together
    source.reset_calls()
    bus = EventBus()
    seen = Recorder(bus)
    opened: list[str] = []

    async def hook(method: str, repository: str, reference: str) -> None:
        if method == "blob_open":
            opened.append(reference)

    source.faults.hook = hook
    results = await CopyEngine(events=bus).copy_many(
        [request(source.repository(n), "1", (target.repository(f"mirror/{n}"), "1")) for n in repos]
    )

    assert [r.outcome for r in results] == ["copied"] * 5, [r.error for r in results]
    assert opened.count(str(Digest.of(shared))) == 1
    shared_done = [e for e in seen.events if getattr(e, "digest", None) == str(Digest.of(shared))]
    outcomes = sorted(e.outcome for e in shared_done if hasattr(e, "outcome"))
    assert outcomes == ["copied", "mounted", "mounted", "mounted", "mounted"]
    assert target.calls["blob_put"] == 1 + 5 * 2 * 2 - 0  # shared once; per repo 2 configs + 2 layers


async def test_same_blob_twice_in_one_pass_to_the_same_repository_is_deduplicated(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    await push_image(src, [layer("a")], tag="1", config=b'{"same":1}')
    await push_image(src, [layer("b")], tag="2", config=b'{"same":1}')
    bus = EventBus()
    seen = Recorder(bus)
    engine = CopyEngine(events=bus, limits=Limits(images=1))

    results = await engine.copy_many([request(src, "1", (dst, "1")), request(src, "2", (dst, "2"))])

    assert [r.outcome for r in results] == ["copied", "copied"]
    assert seen.blob_outcomes() == {"copied": 3, "deduplicated": 1}


async def test_copy_within_one_registry_mounts_from_the_source(source: MemoryRegistry) -> None:
    src, dst = source.repository("app"), source.repository("mirror/app")
    await push_image(src, [layer("a")], tag="1")
    source.reset_calls()
    bus = EventBus()
    seen = Recorder(bus)

    result = await CopyEngine(events=bus).copy(request(src, "1", (dst, "1")))

    assert result.outcome == "copied", result.error
    assert seen.blob_outcomes() == {"mounted": 2}
    assert "blob_open" not in source.calls
    assert "blob_put" not in source.calls


async def test_location_cache_is_persisted_and_reused(
    source: MemoryRegistry, target: MemoryRegistry, tmp_path: Path
) -> None:
    state = tmp_path / "state" / "locations.json"
    src = source.repository("app")
    await push_image(src, [layer("a", 3000)], tag="1")
    first = CopyEngine(locations=LocationCache(state))
    assert (await first.copy_many([request(src, "1", (target.repository("one"), "1"))]))[
        0
    ].outcome == "copied"
    assert state.exists()

    cache = LocationCache(state)
    cache.load()
    bus = EventBus()
    seen = Recorder(bus)
    target.reset_calls()
    second = CopyEngine(locations=cache, events=bus)
    result = (await second.copy_many([request(src, "1", (target.repository("two"), "1"))]))[0]

    assert result.outcome == "copied", result.error
    assert seen.blob_outcomes() == {"mounted": 2}
    assert "blob_put" not in target.calls
    assert result.bytes == 0


async def test_stale_location_falls_back_to_an_upload_in_the_mount_session(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src, dst = source.repository("app"), target.repository("app")
    image = await push_image(src, [layer("a")], tag="1")
    cache = LocationCache()
    for blob in image.blobs:
        cache.add("dst.example", blob.digest, "gone")
    bus = EventBus()
    seen = Recorder(bus)

    result = await CopyEngine(locations=cache, events=bus).copy(request(src, "1", (dst, "1")))

    assert result.outcome == "copied", result.error
    assert seen.blob_outcomes() == {"copied": 2}
    assert target.calls["blob_mount"] == 2
    assert all(cache.known("dst.example", b.digest) == {"app"} for b in image.blobs)


# -- bounds and cancellation ---------------------------------------------------------------------------


async def test_concurrency_bounds_are_respected(source: MemoryRegistry, target: MemoryRegistry) -> None:
    names = [f"app{i}" for i in range(6)]
    for name in names:
        await push_image(source.repository(name), [layer(f"{name}-{j}", 3000) for j in range(4)], tag="1")
    source.chunk_size = 500
    source.faults.chunk_delay = 0.001
    bus = EventBus()
    active = {"images": 0, "max_images": 0, "copying": 0, "max_copying": 0, "streams": 0, "max_streams": 0}

    def step(kind: str, by: int) -> None:
        active[kind] += by
        active["max_" + kind] = max(active["max_" + kind], active[kind])

    def watch(event: object) -> None:
        kind = type(event).__name__
        if kind == "ImageStarted":
            step("images", 1)
        elif kind in ("ImageDone", "ImageFailed"):
            step("images", -1)
            step("copying", -1)
        elif kind in ("TransferStarted", "TransferFinished"):
            step("streams", 1 if kind == "TransferStarted" else -1)

    async def hook(method: str, repository: str, reference: str) -> None:
        if method == "manifest_get":  # the first step of copying, after the unchanged check
            step("copying", 1)

    source.faults.hook = hook
    bus.subscribe(watch)
    limits = Limits(checks=3, images=2, blob_streams=3)
    results = await CopyEngine(limits=limits, events=bus).copy_many(
        [request(source.repository(n), "1", (target.repository(n), "1")) for n in names]
    )

    assert all(r.outcome == "copied" for r in results)
    assert active["max_images"] == 3 + 2  # checked or waiting (3), plus copying (2)
    assert active["max_copying"] == 2
    assert 2 <= active["max_streams"] <= 3
    assert 2 <= source.max_open_streams <= 3


async def test_unchanged_checks_are_not_held_up_by_copies(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    """Images already up to date are checked while others copy: a slow copy does not hold the
    unchanged checks of the rest of the pass behind it."""
    for n in range(6):
        await push_image(source.repository(f"app{n}"), [layer(f"app{n}", 3000)], tag="1")
    reqs = [request(source.repository(f"app{n}"), "1", (target.repository(f"app{n}"), "1")) for n in range(6)]
    await CopyEngine().copy_many(reqs[1:])  # all but app0 are up to date
    source.chunk_size, source.faults.chunk_delay = 100, 0.01  # app0's copy takes ~0.3 s
    order: list[str] = []
    bus = EventBus()
    bus.subscribe(lambda e: order.append(e.source) if type(e).__name__ == "ImageDone" else None)
    results = await CopyEngine(limits=Limits(checks=2, images=1), events=bus).copy_many(reqs)
    assert [r.outcome for r in results] == ["copied"] + ["unchanged"] * 5
    assert order[-1].endswith("app0:1"), order


async def test_copy_many_works_through_images_with_a_few_tasks_not_one_per_image(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    """Images are checked by at most ``checks`` worker tasks, one image after another (a task per
    image costs more than the HEADs of a nothing-changed image); results keep request order, and
    the check slots and copies stay bounded as before."""
    src = source.repository("app")
    for n in range(3):
        await push_image(src, [layer("base", 3000), layer(f"app{n}", 500)], tag=f"{n}")
    for n in range(3, 40):
        await push_image(src, [layer("base", 3000)], tag=f"{n}", config=f'{{"n": {n}}}'.encode())
    dst = target.repository("app")
    reqs = [request(src, str(n), (dst, str(n))) for n in range(40)]
    await CopyEngine().copy_many(reqs[3:])  # 3..39 up to date, 0..2 to copy
    tasks: set[int] = set()
    bus = EventBus()
    bus.subscribe(
        lambda e: tasks.add(id(asyncio.current_task())) if type(e).__name__ == "ImageStarted" else None
    )
    results = await CopyEngine(limits=Limits(checks=3, images=1), events=bus).copy_many(reqs)
    assert [r.reference for r in results] == [str(n) for n in range(40)]
    assert [r.outcome for r in results] == ["copied"] * 3 + ["unchanged"] * 37
    # ``checks`` workers, plus one more each time an image handed its check slot over to copy.
    assert len(tasks) <= 3 + 3


async def test_largest_blobs_go_first(source: MemoryRegistry, target: MemoryRegistry) -> None:
    src = source.repository("app")
    await push_image(src, [layer("small", 10), layer("big", 9000), layer("mid", 500)], tag="1")
    opened: list[int] = []

    async def hook(method: str, repository: str, reference: str) -> None:
        if method == "blob_open":
            opened.append(len(source.blobs[Digest.parse(reference)]))

    source.faults.hook = hook
    await CopyEngine(limits=Limits(blob_streams=1)).copy(request(src, "1", (target.repository("app"), "1")))
    assert opened == sorted(opened, reverse=True)


async def test_cancellation_propagates_and_leaves_no_tag(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src = source.repository("app")
    big = layer("a", 100_000)
    await push_image(src, [big], tag="1")
    source.chunk_size = 100
    source.faults.chunk_delay = 0.01  # 1000 chunks: ten seconds unless cancelled
    pulled = [0]

    def count(event: object) -> None:
        if isinstance(event, BytesTransferred):
            pulled[0] += event.count

    source.events = EventBus()
    source.events.subscribe(count)
    task = asyncio.create_task(CopyEngine().copy(request(src, "1", (target.repository("app"), "1"))))
    # Cancel only once the big layer is really on its way (bytes of it read), not at a fixed time.
    await until(lambda: pulled[0] > 1000 and target.calls["blob_put"] > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pulled[0] < len(big)  # cancelled mid-transfer, not after it
    assert "app" not in target.tags
    assert Digest.of(big) not in target.links.get("app", set())
    assert source.open_streams == 0


async def test_manifest_events_follow_push_order(source: MemoryRegistry, target: MemoryRegistry) -> None:
    src, dst = source.repository("app"), target.repository("app")
    index = await push_multiarch(src, "1")
    bus = EventBus()
    seen = Recorder(bus)
    await CopyEngine(events=bus).copy(request(src, "1", (dst, "1")))
    refs = [e.reference for e in seen.of(ManifestPushed)]
    assert refs[-1] == "1"  # the root, by its tag, after every child
    assert sorted(refs[:-1]) == sorted(str(d.digest) for d in index.manifests)


def _blob_digests(raw: bytes) -> list[Digest]:
    obj = json.loads(raw)
    return [Digest.parse(d["digest"]) for d in [obj["config"], *obj["layers"]]]


# -- the tee: bounded memory, held-back last chunk ---------------------------------------------------


class SlowTarget(MemoryRepository):
    """A target that consumes slowly and records how far the source got ahead of it."""

    def __init__(self, registry: MemoryRegistry, name: str, pulled: list[int]) -> None:
        super().__init__(registry, name)
        self.pulled = pulled
        self.max_ahead = 0

    async def blob_put(self, digest: Digest, size: int, chunks: Any, *, upload: Any = None) -> None:
        consumed = 0

        async def slow() -> Any:
            nonlocal consumed
            async for chunk in chunks:
                await asyncio.sleep(0.001)
                consumed += len(chunk)
                self.max_ahead = max(self.max_ahead, self.pulled[0] - consumed)
                yield chunk

        await super().blob_put(digest, size, slow(), upload=upload)


class TrustingTarget(MemoryRepository):
    """A target that would store whatever arrives: records whether an upload stream ever ended."""

    completed: list[Digest]

    async def blob_put(self, digest: Digest, size: int, chunks: Any, *, upload: Any = None) -> None:
        async for _ in chunks:
            pass
        self.completed.append(digest)


async def test_slowest_target_sets_the_pace_and_memory_stays_bounded(source: MemoryRegistry) -> None:
    src = source.repository("app")
    # Bigger than SMALL_BLOB: blobs up to that are read whole, bigger ones are teed chunk by chunk.
    await push_image(src, [layer("big", SMALL_BLOB + 400_000)], tag="1")
    source.chunk_size = 4000
    bus = EventBus()
    pulled = [0]

    def count(event: object) -> None:
        if isinstance(event, BytesTransferred) and event.direction == "pulled":
            pulled[0] += event.count

    bus.subscribe(count)
    source.events = bus
    fast = MemoryRegistry("fast.example")
    slow_registry = MemoryRegistry("slow.example")
    slow = SlowTarget(slow_registry, "app", pulled)
    limits = Limits(tee_queue=2)

    result = await CopyEngine(limits=limits).copy(
        request(src, "1", (fast.repository("app"), "1"), (slow, "1"))
    )

    assert result.outcome == "copied", result.error
    # queue + the chunk being handed over + the held-back chunk, per target
    assert slow.max_ahead <= (limits.tee_queue + 3) * source.chunk_size
    assert slow_registry.links["app"] == fast.links["app"]


async def test_bad_source_never_completes_an_upload(source: MemoryRegistry) -> None:
    src = source.repository("app")
    bad = layer("rotten", 10_000)
    await push_image(src, [bad], tag="1")
    source.chunk_size = 1000
    source.faults.corrupt_blobs.add(Digest.of(bad))
    trusting = TrustingTarget(MemoryRegistry("trusting.example"), "app")
    trusting.completed = []

    result = await CopyEngine().copy(request(src, "1", (trusting, "1")))

    assert result.outcome == "failed"
    assert "DigestMismatch" in (result.error or "")
    assert Digest.of(bad) not in trusting.completed


class ChunksRecorder(MemoryRepository):
    """A target that records what kind of ``chunks`` each ``blob_put`` got."""

    kinds: dict[Digest, str]

    async def blob_put(self, digest: Digest, size: int, chunks: Any, *, upload: Any = None) -> None:
        self.kinds[digest] = "whole" if isinstance(chunks, WholeBlob) else "stream"
        await super().blob_put(digest, size, chunks, upload=upload)


async def test_small_blobs_are_handed_over_whole_and_big_ones_streamed(source: MemoryRegistry) -> None:
    src = source.repository("app")
    small, edge, big = layer("small", 4096), layer("edge", SMALL_BLOB), layer("big", SMALL_BLOB + 1)
    image = await push_image(src, [small, edge, big], tag="1")
    source.chunk_size = 64 * 1024
    dst = ChunksRecorder(MemoryRegistry("rec.example"), "app")
    dst.kinds = {}

    result = await CopyEngine().copy(request(src, "1", (dst, "1")))

    assert result.outcome == "copied", result.error
    config = next(b.digest for b in image.blobs if b.digest not in {Digest.of(x) for x in (small, edge, big)})
    assert dst.kinds == {
        Digest.of(small): "whole", Digest.of(edge): "whole", config: "whole", Digest.of(big): "stream"
    }  # fmt: skip
    assert all(dst.registry.blobs[b.digest] == source.blobs[b.digest] for b in image.blobs)


async def test_a_bad_small_blob_is_read_once_for_two_targets_and_completes_neither(
    source: MemoryRegistry,
) -> None:
    src = source.repository("app")
    bad = layer("rotten", 10_000)
    await push_image(src, [bad], tag="1")
    source.chunk_size = 1000
    source.faults.corrupt_blobs.add(Digest.of(bad))
    one = TrustingTarget(MemoryRegistry("one.example"), "app")
    two = TrustingTarget(MemoryRegistry("two.example"), "app")
    one.completed, two.completed = [], []
    source.reset_calls()

    result = await CopyEngine().copy(request(src, "1", (one, "1"), (two, "1")))

    assert result.outcome == "failed"
    assert (result.error or "").count("DigestMismatch") == 2, result.error
    assert Digest.of(bad) not in one.completed + two.completed
    assert source.calls["blob_open"] == 2  # the config and the bad layer, each read once


async def test_source_failure_is_retried_with_a_fresh_read(
    source: MemoryRegistry, target: MemoryRegistry
) -> None:
    src = source.repository("app")
    image = await push_image(src, [layer("a", 3000)], tag="1")
    source.faults.fail_calls[("blob_open", 1)] = TransportError("connection reset")

    result = await CopyEngine(limits=Limits(retry_backoff=0)).copy(
        request(src, "1", (target.repository("app"), "1"))
    )

    assert result.outcome == "copied", result.error
    assert source.calls["blob_open"] == 3  # two blobs, the first read twice
    assert target.tags["app"]["1"] == image.digest


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="blob_streams"):
        Limits(blob_streams=0)
    with pytest.raises(ValueError, match="retry_backoff"):
        Limits(retry_backoff=-1)


# -- every sample kind, in memory ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_every_sample_kind_copies_byte_for_byte(
    source: MemoryRegistry, target: MemoryRegistry, kind: str
) -> None:
    image = sample_image("app", kind=kind)
    src, dst = source.repository("app"), target.repository("app")
    await push_sample(src, image, "1")

    result = await CopyEngine().copy(request(src, "1", (dst, "1")))

    assert result.outcome == "copied", result.error
    assert result.target_digests == {str(dst): image.digest}
    for manifest in image.manifests:
        assert target.manifests["app"][manifest.digest].raw == manifest.raw
    assert set(image.blobs) <= target.links["app"]
    assert result.bytes == sum(len(b) for b in image.blobs.values())


@pytest.mark.parametrize(
    "kind", ["docker-list", "oci-index", "oci-index-no-mediatype", "odd-json", "attested-index"]
)
async def test_platform_filter_on_every_index_kind(
    source: MemoryRegistry, target: MemoryRegistry, kind: str
) -> None:
    image = sample_image("app", kind=kind)
    src, dst = source.repository("app"), target.repository("app")
    await push_sample(src, image, "1")
    arm = Platform.parse("linux/arm/v7")

    result = await CopyEngine().copy(request(src, "1", (dst, "1"), platforms=(arm,)))

    assert result.outcome == "copied", result.error
    root = await dst.manifest_get("1")
    assert isinstance(root, ImageIndex)
    assert root.media_type == image.root.media_type
    kept = [d for d in root.manifests if d.platform is not None and not d.platform.is_unknown]
    assert [str(d.platform) for d in kept] == ["linux/arm/v7"]
    assert len(root.manifests) == (2 if kind == "attested-index" else 1)
    assert result.digest_map == {image.digest: root.digest}


# -- once per pass across target registries --------------------------------------------------------------


@pytest.mark.parametrize("images", [1, 2])
async def test_blob_leaves_the_source_once_for_targets_in_different_registries(
    source: MemoryRegistry, images: int
) -> None:
    shared = layer("base", 20_000)
    for name in ("a", "b"):
        await push_image(source.repository(name), [shared, layer(name)], tag="1")
    source.faults.chunk_delay = 0.001  # with images=2 both transfers are in flight together
    one, two = MemoryRegistry("one.example"), MemoryRegistry("two.example")
    source.reset_calls()
    opened: list[str] = []

    async def hook(method: str, repository: str, reference: str) -> None:
        if method == "blob_open":
            opened.append(reference)

    source.faults.hook = hook
    engine = CopyEngine(limits=Limits(images=images))
    results = await engine.copy_many(
        [
            request(source.repository("a"), "1", (one.repository("a"), "1")),
            request(source.repository("b"), "1", (two.repository("b"), "1")),
        ]
    )

    assert [r.outcome for r in results] == ["copied", "copied"], [r.error for r in results]
    assert opened.count(str(Digest.of(shared))) == 1
    assert one.calls["blob_open"] + two.calls["blob_open"] == 1  # the second copy read the first
    assert Digest.of(shared) in two.links["b"]
    assert sum(r.bytes for r in results) == sum(len(source.blobs[d]) for d in source.blobs)


async def test_a_bad_pass_local_copy_falls_back_to_the_source(source: MemoryRegistry) -> None:
    shared = layer("base", 20_000)
    for name in ("a", "b"):
        await push_image(source.repository(name), [shared, layer(name)], tag="1")
    one, two = MemoryRegistry("one.example"), MemoryRegistry("two.example")
    one.faults.corrupt_blobs.add(Digest.of(shared))

    results = await CopyEngine(limits=Limits(images=1, blob_attempts=1)).copy_many(
        [
            request(source.repository("a"), "1", (one.repository("a"), "1")),
            request(source.repository("b"), "1", (two.repository("b"), "1")),
        ]
    )

    assert [r.outcome for r in results] == ["copied", "copied"], [r.error for r in results]
    assert one.calls["blob_open"] == 1
    assert two.blobs[Digest.of(shared)] == shared


class BytearraySource(MemoryRepository):
    """A source whose stream hands out bytearrays (bytes-like chunks must pass through unchanged)."""

    @contextlib.asynccontextmanager
    async def _open(self, digest: Digest, offset: int) -> Any:
        async with super()._open(digest, offset) as stream:

            class Wrapped:
                size = stream.size

                async def __aiter__(self) -> Any:
                    async for chunk in stream:
                        yield bytearray(chunk)

            yield Wrapped()


async def test_bytes_like_chunks_pass_through_the_tee(source: MemoryRegistry, target: MemoryRegistry) -> None:
    plain = source.repository("app")
    image = await push_image(plain, [layer("a", 5000)], tag="1")
    source.chunk_size = 700
    src = BytearraySource(source, "app")

    result = await CopyEngine().copy(request(src, "1", (target.repository("app"), "1")))

    assert result.outcome == "copied", result.error
    assert all(target.blobs[b.digest] == source.blobs[b.digest] for b in image.blobs)


async def test_a_blob_task_that_fails_unexpectedly_gives_every_stream_slot_back(
    source: MemoryRegistry, target: MemoryRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug in one blob task aborts its image's task group: the sibling tasks created after taking
    # a slot but cancelled before they first ran must still give their slot back, or a few such
    # images leave the pass waiting for ever for a slot that no task holds.
    src, dst = source.repository("app"), target.repository("mirror/app")
    limits = Limits(blob_streams=4)
    for tag in ("bad1", "bad2", "bad3", "bad4", "bad5"):
        await push_image(src, [layer(f"{tag}-{i}", 200) for i in range(6)], tag=tag)
    await push_image(src, [layer("good", 300)], tag="good")
    engine = CopyEngine(limits=limits)
    ensure = engine._blobs.ensure

    async def bug_in_bad_images(source_repo: Any, blob: Any, targets: Any, *, entry: str = "") -> Any:
        if blob.size == 200:
            raise RuntimeError("a bug in a blob task")
        return await ensure(source_repo, blob, targets, entry=entry)

    monkeypatch.setattr(engine._blobs, "ensure", bug_in_bad_images)
    for tag in ("bad1", "bad2", "bad3", "bad4", "bad5"):
        failed = await asyncio.wait_for(engine.copy(request(src, tag, (dst, tag))), 60)  # not for ever
        assert failed.outcome == "failed"
    assert engine._blobs._slots._value == limits.blob_streams  # every slot is back
    done = await asyncio.wait_for(engine.copy(request(src, "good", (dst, "good"))), 60)
    assert done.outcome == "copied", done.error
