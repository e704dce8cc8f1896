"""One delivery per (target repository, blob) per pass, however many images of the pass need it."""

from __future__ import annotations

from collections import Counter

from copykit import Recorder, layer, push_multiarch

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.core.events import BlobDone, EventBus
from mirrord.oci import Digest
from mirrord.testing.memory import MemoryRegistry


async def test_tags_of_one_repository_share_a_base_layer_delivery() -> None:
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    base = layer("shared-base", 20_000)
    repos, tags = ["a", "b", "c"], ["1", "2", "3"]
    for name in repos:
        for tag in tags:
            await push_multiarch(source.repository(name), tag, shared=base, attestations=False)
    source.faults.chunk_delay = 0.001  # keep the images in flight together
    bus = EventBus()
    seen = Recorder(bus)
    requests = [
        CopyRequest(
            source=source.repository(name),
            reference=tag,
            targets=(Target(target.repository(f"m/{name}"), tag),),
        )
        for name in repos
        for tag in tags
    ]

    results = await CopyEngine(events=bus).copy_many(requests)

    assert [r.outcome for r in results] == ["copied"] * 9, [r.error for r in results]
    base_done = [e for e in seen.events if isinstance(e, BlobDone) and e.digest == str(Digest.of(base))]
    delivered = Counter(e.repository for e in base_done if e.outcome != "deduplicated")
    # Each repository received the base exactly once (one upload, two mounts); every other
    # image of the same repository shared that delivery.
    assert delivered == {"m/a": 1, "m/b": 1, "m/c": 1}
    assert sorted(e.outcome for e in base_done if e.outcome != "deduplicated") == [
        "copied",
        "mounted",
        "mounted",
    ]
    assert target.calls["blob_mount"] == 2


def _copy_requests(source: MemoryRegistry, target: MemoryRegistry, tags: list[str]) -> list[CopyRequest]:
    app, mirror = source.repository("app"), target.repository("m")
    return [CopyRequest(source=app, reference=t, targets=(Target(mirror, t),)) for t in tags]


async def test_a_repository_without_tags_gets_no_blob_heads() -> None:
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    for tag in ("1", "2"):
        await push_multiarch(source.repository("app"), tag, attestations=False)

    results = await CopyEngine().copy_many(_copy_requests(source, target, ["1", "2"]))

    assert [r.outcome for r in results] == ["copied", "copied"], [r.error for r in results]
    # Asked once for the pass, before the first blob; then every blob went straight to upload.
    assert (target.calls["has_tags"], target.calls["blob_head"]) == (1, 0)


async def test_a_repository_with_a_tag_gets_a_head_per_blob_and_no_needless_upload() -> None:
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    base = layer("base", 5000)
    await push_multiarch(source.repository("app"), "1", attestations=False, shared=base)
    await push_multiarch(source.repository("app"), "2", attestations=False, shared=base)
    assert (await CopyEngine().copy_many(_copy_requests(source, target, ["1"])))[0].outcome == "copied"
    target.reset_calls()

    (result,) = await CopyEngine().copy_many(_copy_requests(source, target, ["2"]))

    assert result.outcome == "copied", result.error
    assert target.calls["has_tags"] == 1
    assert target.calls["blob_head"] > 0  # the repository is not new: what it holds is not sent again
    assert target.calls["blob_put"] < target.calls["blob_head"]


async def test_blobs_left_in_a_tagless_repository_are_uploaded_again_and_the_image_is_whole() -> None:
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    await push_multiarch(source.repository("app"), "1", attestations=False)
    assert (await CopyEngine().copy_many(_copy_requests(source, target, ["1"])))[0].outcome == "copied"
    await target.repository("m").manifest_delete("1")  # an interrupted run: blobs, no tag

    (again,) = await CopyEngine().copy_many(_copy_requests(source, target, ["1"]))

    assert again.outcome == "copied", again.error
    assert await target.repository("m").manifest_head("1") is not None


async def test_later_images_for_a_repository_found_new_skip_the_unchanged_heads() -> None:
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    for tag in ("1", "2", "3"):
        await push_multiarch(source.repository("app"), tag, attestations=False)
    engine = CopyEngine()
    first, *later = _copy_requests(source, target, ["1", "2", "3"])
    assert (await engine.copy(first)).outcome == "copied"
    assert (source.calls["manifest_head"], target.calls["manifest_head"]) == (1, 1)

    results = [await engine.copy(request) for request in later]

    assert [r.outcome for r in results] == ["copied", "copied"], [r.error for r in results]
    # The pass knows "m" had no tag: nothing there can be up to date, so no HEAD on either side;
    # the source GET gives the digest, and the target still gets each tag, blobs first.
    assert (source.calls["manifest_head"], target.calls["manifest_head"]) == (1, 1)
    assert target.calls["has_tags"] == 1
    for tag, result in zip(("2", "3"), results, strict=True):
        head = await target.repository("m").manifest_head(tag)
        assert head is not None
        assert head.digest == result.source_digest


async def test_a_repository_with_a_tag_keeps_the_unchanged_heads() -> None:
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    for tag in ("1", "2", "3"):
        await push_multiarch(source.repository("app"), tag, attestations=False)
    assert (await CopyEngine().copy_many(_copy_requests(source, target, ["1"])))[0].outcome == "copied"
    source.reset_calls()
    target.reset_calls()
    engine = CopyEngine()

    results = [await engine.copy(r) for r in _copy_requests(source, target, ["2", "1", "3"])]

    assert [r.outcome for r in results] == ["copied", "unchanged", "copied"], [r.error for r in results]
    assert (source.calls["manifest_head"], target.calls["manifest_head"]) == (3, 3)
    assert source.calls["manifest_get"] == 2 * 3  # index + 2 platforms per copied tag; none for "1"


async def test_a_tag_written_earlier_in_the_pass_is_checked_and_found_unchanged() -> None:
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    for tag in ("1", "2"):
        await push_multiarch(source.repository("app"), tag, attestations=False)
    engine = CopyEngine()
    first, second = _copy_requests(source, target, ["1", "2"])
    assert [(await engine.copy(r)).outcome for r in (first, second)] == ["copied", "copied"]
    target.reset_calls()

    again = await engine.copy(second)  # "m" was found tagless, but this pass wrote "2" there

    assert again.outcome == "unchanged", again.error
    assert target.calls["manifest_head"] == 1
    assert target.calls["manifest_put"] == 0
