"""`mirrord sync` under injected faults against real registries (FaultProxy in front of each).

Figures (faults injected, retries logged, time against a clean run) are printed; run with ``-s``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import RegistryFactory
from tests.e2e.helpers import read_report, run_cli, seed, tags_at
from tests.reliability.kit import assert_identical, corpus, retries_logged, retry_delays, sync_plan
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]


async def test_sync_survives_resets_503s_and_429s(
    plain_registry: RegistryServer, registry_factory: RegistryFactory, unique_repo: str, tmp_path: Path
) -> None:
    images = corpus(4)
    await seed(plain_registry.host, unique_repo, images)
    clean_target, target = registry_factory("plain"), registry_factory("plain")
    async with FaultProxy(plain_registry.url) as src, FaultProxy(target.url) as dst:
        started = time.monotonic()
        clean_plan = sync_plan(tmp_path / "clean.yaml", src.host, clean_target.host, unique_repo, images)
        clean = await run_cli("sync", "-c", str(clean_plan))
        clean_seconds = time.monotonic() - started
        assert clean.code == 0, clean.output

        faults = [
            # 503 and 429 with Retry-After: 1, sprinkled over every kind of request at both ends.
            src.add_fault("status", status=503, retry_after=1, probability=0.05, times=4, seed=1),
            src.add_fault("status", status=429, retry_after=1, probability=0.05, times=4, seed=2),
            dst.add_fault("status", status=503, retry_after=1, probability=0.05, times=3, seed=3),
            dst.add_fault("status", status=429, retry_after=1, probability=0.05, times=3, seed=4),
            # A quarter of blob downloads break mid-body (configs are ~600 bytes); a quarter of upload
            # parts fail, and some arrive but lose their answer (the offset query tells which).
            src.add_fault(
                "reset",
                method="GET",
                path_re=r"/blobs/sha256:",
                after_bytes=300,
                probability=0.25,
                times=None,
                seed=5,
            ),
            dst.add_fault("status", method="PATCH", status=500, probability=0.25, times=None, seed=6),
            dst.add_fault("reset", method="PATCH", probability=0.1, times=None, seed=7),
        ]
        started = time.monotonic()
        plan = sync_plan(
            tmp_path / "plan.yaml", src.host, dst.host, unique_repo, images,
            registry_extra={dst.host: "chunk_size: 64KiB"},
        )  # fmt: skip
        result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "report.json"))
        faulty_seconds = time.monotonic() - started
    assert result.code == 0, result.output
    assert {i["result"] for i in read_report(tmp_path / "report.json")} == {"copied"}
    injected = sum(f.triggered for f in faults)
    retries = retries_logged(result.stderr)
    assert all(f.triggered > 0 for f in faults[-3:]), [f.triggered for f in faults]
    # A reset download is resumed with Range ("reset"); a failed part is resent from the offset the
    # registry reports ("upload"). A source read abandoned with a failed upload needs no resume of
    # its own, so injected resets and "reset" retries are not one to one.
    assert retries.get("reset", 0) > 0, retries
    assert retries.get("upload", 0) > 0, retries
    assert retries.get("5xx", 0) + retries.get("429", 0) > 0, retries
    # Every 503/429 carried Retry-After: 1, and every retry of one waited exactly that long.
    assert {d for reason, d in retry_delays(result.stderr) if reason in ("5xx", "429")} == {1.0}
    manifests = assert_identical(plain_registry, target, unique_repo, images)
    print(
        f"\nfaults injected: {injected} ({[f.triggered for f in faults]}); retries logged: {retries}; "
        f"clean {clean_seconds:.1f}s, faulty {faulty_seconds:.1f}s "
        f"(+{faulty_seconds - clean_seconds:.1f}s); {manifests} manifests verified with skopeo"
    )


async def test_slow_loris_source_is_aborted_within_the_stall_time(
    plain_registry: RegistryServer, registry_factory: RegistryFactory, unique_repo: str, tmp_path: Path
) -> None:
    images = corpus(1, prefix="s")
    await seed(plain_registry.host, unique_repo, images)
    target = registry_factory("plain")
    layer = next(str(d) for d, data in images["s1"].blobs.items() if len(data) > 100_000)
    async with FaultProxy(plain_registry.url) as src:
        # Bytes trickle, then stop for far longer than the stall time: the first GET and its resume.
        stall = src.add_fault("slow", method="GET", path_re=layer, after_bytes=10_000, delay=60, times=2)
        plan = sync_plan(
            tmp_path / "plan.yaml", src.host, target.host, unique_repo, images,
            registry_extra={src.host: "stall_timeout: 1s"},
        )  # fmt: skip
        # Each stall lasts 60 s: a sync that waited one out instead of aborting after the 1 s stall
        # time would miss this 40 s deadline (a deadline for a broken run, not a timing bound).
        result = await run_cli("sync", "-c", str(plan), timeout=40)
        blob_gets = [r for r in src.requests if r[0] == "GET" and "/blobs/" in r[1]]
    assert result.code == 0, result.output
    assert stall.triggered == 2
    assert retries_logged(result.stderr).get("stall", 0) == 2, result.stderr
    assert [status for _, path, status in blob_gets if layer in path] == [200, 206, 206]
    assert_identical(plain_registry, target, unique_repo, images)


async def test_flipped_byte_fails_exactly_one_image(
    plain_registry: RegistryServer, registry_factory: RegistryFactory, unique_repo: str, tmp_path: Path
) -> None:
    images = corpus(3, prefix="f")
    await seed(plain_registry.host, unique_repo, images)
    others = {d for tag, image in images.items() if tag != "f2" for d in image.blobs}
    only_f2 = sorted(
        str(d) for d in images["f2"].blobs if d not in others and images["f2"].blobs[d][:2] == b"\x1f\x8b"
    )
    assert only_f2, "f2 must own a layer of its own"
    target = registry_factory("plain")
    async with FaultProxy(plain_registry.url) as src:
        flip = src.add_fault("flip", method="GET", path_re=only_f2[0], after_bytes=5_000, times=None)
        plan = sync_plan(tmp_path / "plan.yaml", src.host, target.host, unique_repo, images)
        result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "report.json"))
    assert result.code == 1, result.output
    assert flip.triggered >= 1
    report = {i["source"].rsplit(":", 1)[1]: i for i in read_report(tmp_path / "report.json")}
    assert {tag: i["result"] for tag, i in report.items()} == {"f1": "copied", "f2": "failed", "f3": "copied"}
    assert "digest" in report["f2"]["error"].lower()
    assert only_f2[0] in report["f2"]["error"]
    assert await tags_at(target.host, unique_repo) == ["f1", "f3"]
    assert_identical(plain_registry, target, unique_repo, ["f1", "f3"])
