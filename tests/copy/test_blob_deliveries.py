"""One delivery per (target repository, blob) per pass, however many images of the pass need it."""

from __future__ import annotations

from collections import Counter

from copykit import Recorder, layer, push_multiarch

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.events import BlobDone, EventBus
from mirrord.oci import Digest
from mirrord.registry.memory import MemoryRegistry


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
