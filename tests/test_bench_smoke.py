"""Smoke test of the benchmark harness (bench/): corpus determinism, and the floor copier against a real
registry, measured as a child process with its requests counted from the access logs."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib.machinery
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench.corpus import Corpus, CorpusSpec, LayerKey, LayerStream, config_bytes, image_layers
from bench.daemon import Daemon
from bench.floor import write_blob_list
from bench.measure import ProcessResult, RequestStats, parse_access_log, request_kind, run_measured
from bench.registries import free_port, registry
from bench.report import print_result, tags_lines
from bench.scenarios import Measurement, ScenarioResult, small_spec, tags_spec
from bench.seed import head_digests, seed_corpus
from bench.tools import ROOT, daemon_argv, daemon_plan, floor_argv, headloop_argv, mirrord_argv, mirrord_plan

TINY = CorpusSpec(repos=2, tags=2, platforms=2, base_mb=0.25, app_mb=0.0625, seed="smoke")


def _bytes(layer: LayerKey, seed: str = "s") -> tuple[bytes, LayerStream]:
    stream = LayerStream(seed, layer)
    return b"".join(stream), stream


def test_layer_is_deterministic_gzip_tar_with_matching_digests() -> None:
    data, stream = _bytes(LayerKey("app/x", 300_000))
    again, _ = _bytes(LayerKey("app/x", 300_000))
    other, _ = _bytes(LayerKey("app/y", 300_000))
    assert data == again
    assert data != other
    assert stream.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stream.size == len(data)
    plain = gzip.decompress(data)
    assert stream.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        [member] = tar.getmembers()
        assert member.size == 300_000


def test_corpus_shape_shares_base_and_consecutive_tag_layers() -> None:
    spec = CorpusSpec(repos=2, tags=3, platforms=3)
    t0, t1, t2 = (image_layers(spec, "bench/app-000", 1, i) for i in range(3))
    other = image_layers(spec, "bench/app-001", 1, 0)
    assert t0[0] == t1[0] == other[0]  # the platform's base layer, in every repo
    assert t1[1] == t0[-1]  # consecutive tags share a layer
    assert t2[1] == t1[-1]
    assert len({t0[-1], t1[-1], t2[-1], other[-1]}) == 4  # each tag brings its own app layer
    assert spec.key() == CorpusSpec(repos=2, tags=3, platforms=3, base_mb=16, app_mb=4.0).key()
    assert config_bytes(spec, "r", "1.0.0", 0, ["sha256:a"]) == config_bytes(
        spec, "r", "1.0.0", 0, ["sha256:a"]
    )


def test_access_log_parsing_counts_kinds_and_bytes() -> None:
    lines = [
        '127.0.0.1 - - [x] "GET /v2/a/b/blobs/sha256:ab HTTP/1.1" 200 1000 "" "ua"',
        '127.0.0.1 - - [x] "HEAD /v2/a/b/manifests/1.0 HTTP/1.1" 200 0 "" "ua"',
        '127.0.0.1 - - [x] "PUT /v2/a/blobs/uploads/uuid?_state=x&digest=sha256:ab HTTP/1.1" 201 0 "" "ua"',
        '127.0.0.1 - - [x] "GET /v2/a/manifests/sha256:cd HTTP/1.1" 404 90 "" "ua"',
        "not an access log line",
    ]
    stats = parse_access_log(lines)
    assert stats.counts == {"GET blob": 1, "HEAD manifest": 1, "PUT upload": 1, "GET manifest": 1}
    assert stats.errors == {"GET manifest": 1}
    assert (stats.blob_bytes_sent, stats.manifest_bytes_sent) == (1000, 0)
    assert request_kind("/v2/") == "ping"


def _need_registry() -> None:
    if shutil.which("docker-registry") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-registry is not installed (run `make deps`)")
        pytest.skip("docker-registry is not installed (run `make deps`); the floor copier needs it")


@pytest.mark.integration
def test_floor_copies_each_distinct_blob_once(tmp_path: Path) -> None:
    _need_registry()
    with registry(tmp_path / "src") as src, registry(tmp_path / "dst") as dst:
        corpus = asyncio.run(seed_corpus(src.host, TINY))
        repos = TINY.repo_names()
        assert asyncio.run(head_digests(src.host, [(r, t) for r in repos for t in corpus.tags[r]])) == {
            (r, t): d for r in repos for t, d in corpus.tags[r].items()
        }
        assert Corpus.from_json(json.loads(json.dumps(corpus.to_json()))) == corpus
        blobs = corpus.distinct_blobs(repos)
        blob_list = tmp_path / "blobs.json"
        write_blob_list(blob_list, blobs, corpus.blobs)
        marks = src.mark(), dst.mark()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = run_measured(floor_argv(src.host, dst.host, blob_list, 4), tmp_path / "floor.log", env=env)
        assert proc.exit_code == 0, (tmp_path / "floor.log").read_text()
        src_stats, dst_stats = src.requests_since(marks[0]), dst.requests_since(marks[1])
        assert proc.wall_s > 0
        assert proc.cpu_s > 0
        assert proc.peak_rss > 1_000_000
    assert src_stats.counts == {"GET blob": len(blobs)}
    assert src_stats.blob_bytes_sent == corpus.unique_bytes(repos)
    assert dst_stats.counts == {"POST upload": len(blobs), "PUT upload": len(blobs)}
    assert not dst_stats.errors


@pytest.mark.integration
def test_floor_for_two_targets_reads_each_blob_once_and_writes_it_to_both(tmp_path: Path) -> None:
    _need_registry()
    with (
        registry(tmp_path / "src") as src,
        registry(tmp_path / "a") as one,
        registry(tmp_path / "b") as two,
    ):
        corpus = asyncio.run(seed_corpus(src.host, TINY))
        blobs = corpus.distinct_blobs(TINY.repo_names())
        blob_list = tmp_path / "blobs.json"
        write_blob_list(blob_list, blobs, corpus.blobs)
        marks = [r.mark() for r in (src, one, two)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        argv = floor_argv(src.host, one.host, blob_list, 4, [two.host])
        proc = run_measured(argv, tmp_path / "floor.log", env=env)
        assert proc.exit_code == 0, (tmp_path / "floor.log").read_text()
        stats = [r.requests_since(m) for r, m in zip((src, one, two), marks, strict=True)]
        stored = [one.stored_blob_bytes(), two.stored_blob_bytes()]
    assert stats[0].counts == {"GET blob": len(blobs)}
    for target in stats[1:]:
        assert target.counts == {"POST upload": len(blobs), "PUT upload": len(blobs)}
        assert not target.errors
    assert stored[0] == stored[1] == corpus.unique_bytes(TINY.repo_names())


@pytest.mark.integration
def test_daemon_pass_after_the_recheck_costs_one_head_per_tag_per_side(tmp_path: Path) -> None:
    _need_registry()
    with registry(tmp_path / "src") as src, registry(tmp_path / "dst") as dst:
        corpus = asyncio.run(seed_corpus(src.host, TINY))
        repos = TINY.repo_names()
        plan = tmp_path / "plan.yaml"
        plan.write_text(daemon_plan(mirrord_plan(corpus, repos, src.host, [dst.host])))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        port = free_port()
        with Daemon(daemon_argv(plan, f"127.0.0.1:{port}"), port, tmp_path / "daemon.log", env) as daemon:
            # The daemon's first pass copied every image; the next one looks again for their artifacts
            # (a tag list per source repository), the one after is HEADs only.
            marks = src.mark(), dst.mark()
            assert daemon.run_pass()[1]
            recheck = src.requests_since(marks[0])
            marks = src.mark(), dst.mark()
            wall, ok = daemon.run_pass()
            stats = src.requests_since(marks[0]), dst.requests_since(marks[1])
            assert daemon.cpu_seconds() > 0
            assert daemon.peak_rss() > 1_000_000
            assert 1_000_000 < daemon.rss() <= daemon.peak_rss()
    tags = corpus.tag_count(repos)
    assert recheck.counts["GET tags"] == len(repos)
    assert ok
    assert 0 < wall < 60
    assert stats[0].counts == {"HEAD manifest": tags}
    assert stats[1].counts == {"HEAD manifest": tags}


def test_tags_spec_is_single_manifest_and_keeps_the_old_keys() -> None:
    spec = tags_spec(3, 4, "s")
    assert (spec.platforms, spec.index, spec.prefix) == (1, False, "tags")
    assert spec.key() != CorpusSpec(3, 4, 1, spec.base_mb, spec.app_mb, "s", "tags").key()
    # Specs with an index (every one seeded before the field existed) keep their key: kept sources
    # are found again.
    before = json.dumps({k: v for k, v in asdict(TINY).items() if k != "index"}, sort_keys=True)
    assert TINY.key() == hashlib.sha256(before.encode()).hexdigest()[:12]
    with pytest.raises(ValueError, match="one platform"):
        CorpusSpec(platforms=2, index=False)


@pytest.mark.integration
def test_headloop_heads_each_tag_once_per_side_like_a_nothing_changed_pass(tmp_path: Path) -> None:
    _need_registry()
    spec = tags_spec(2, 3, "smoke")
    with registry(tmp_path / "src") as src, registry(tmp_path / "dst") as dst:
        corpus = asyncio.run(seed_corpus(src.host, spec))
        repos = spec.repo_names()
        refs = [(r, t) for r in repos for t in corpus.tags[r]]
        # Each tag is a plain image manifest (no index), tagged with the digest the corpus records.
        assert asyncio.run(head_digests(src.host, refs)) == {(r, t): corpus.tags[r][t] for r, t in refs}
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        plan = tmp_path / "plan.yaml"
        plan.write_text(mirrord_plan(corpus, repos, src.host, [dst.host]))
        cold = run_measured(mirrord_argv(plan, tmp_path / "report.json"), tmp_path / "cold.log", env=env)
        assert cold.exit_code == 0, (tmp_path / "cold.log").read_text()
        refs_file = tmp_path / "refs.json"
        refs_file.write_text(json.dumps(refs))
        marks = src.mark(), dst.mark()
        loop = run_measured(headloop_argv(src.host, refs_file, [dst.host], 4), tmp_path / "loop.log", env=env)
        stats = src.requests_since(marks[0]), dst.requests_since(marks[1])
        refs_file.write_text(json.dumps([*refs, [repos[0], "9.9.9"]]))
        missing = run_measured(
            headloop_argv(src.host, refs_file, [dst.host], 4), tmp_path / "miss.log", env=env
        )
    assert loop.exit_code == 0, (tmp_path / "loop.log").read_text()
    assert loop.cpu_s > 0
    assert stats[0].counts == {"HEAD manifest": len(refs)}
    assert stats[1].counts == {"HEAD manifest": len(refs)}
    assert missing.exit_code == 1


def _measurement(name: str, wall: float, cpu: float, heads: int, rss: list[int] | None = None) -> Measurement:
    proc = ProcessResult((name,), 0, wall, cpu, 50_000_000, Path(f"{name}.log"))
    side = RequestStats(counts=Counter({"HEAD manifest": heads}))
    return Measurement(name, proc, side, [side], [0], rss_samples=rss or [])


def test_tags_report_compares_with_the_head_loop_in_one_run() -> None:
    result = ScenarioResult("tags", {"tags": 100, "unique_bytes": 0})
    cold = _measurement("mirrord-cold", 10.0, 0.3, 100)
    cold.source.blob_bytes_sent = 0
    result.runs = [
        _measurement("mirrord-startup", 0.5, 0.1, 0),
        cold,
        _measurement("mirrord-again", 2.2, 1.2, 100),
        _measurement("mirrord-headloop", 2.0, 1.0, 100),
        _measurement("mirrord-daemon-again", 1.0, 0.5, 100, [40_000_000, 41_000_000, 52_000_000]),
    ]
    lines, checks = tags_lines(result)
    by_name = {c.what: c for c in checks}
    assert by_name["nothing changed: mirrord / bare HEAD loop wall"].value == pytest.approx(1.1)
    assert by_name["nothing changed: mirrord / bare HEAD loop CPU"].value == pytest.approx(1.2)
    assert by_name["cold: mirrord CPU ms per tag"].value == pytest.approx(3.0)
    assert not by_name["cold: mirrord CPU ms per tag"].ok
    assert by_name["daemon RSS growth over the passes MB"].value == pytest.approx(12.0)
    assert not by_name["daemon RSS growth over the passes MB"].ok
    assert any("2.00 requests per tag" in line for line in lines)
    assert any(
        line.startswith("  mirrord-cold: 3.00 ms CPU per tag (2.00 without start-up)") for line in lines
    )


def test_small_report_checks_cold_against_skopeo_and_the_nothing_changed_contract() -> None:
    result = ScenarioResult("small", {"tags": 100, "unique_bytes": 0})
    cold = _measurement("mirrord-cold", 3.0, 1.0, 100)
    cold.source.blob_bytes_sent = 0
    result.runs = [
        _measurement("floor", 1.0, 0.5, 0),
        _measurement("skopeo-cold", 10.0, 4.0, 100),
        _measurement("skopeo-again", 2.0, 1.0, 100),
        cold,
        _measurement("mirrord-again", 0.5, 0.4, 100),
    ]
    printed: list[str] = []
    checks = print_result(result, printed.append)
    by_name = {c.what: c for c in checks}
    assert by_name["cold: mirrord / skopeo wall"].value == pytest.approx(0.3)
    assert not by_name["cold: mirrord / skopeo wall"].ok  # the target is 0.25
    assert by_name["nothing changed: source manifest HEADs"].ok
    assert by_name["mirrord-cold: source blob bytes read == unique bytes"].ok
    assert any(line.startswith("  mirrord-cold / skopeo-cold: wall 0.300") for line in printed)


def test_small_spec_is_one_single_platform_image_per_repository() -> None:
    spec = small_spec("s")
    assert (spec.repos, spec.tags, spec.platforms, spec.index) == (144, 1, 1, False)
    assert spec.key() != tags_spec(144, 1, "s").key()  # its own kept source


def test_bench_byte_compiles_the_packages_its_children_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measured processes run from bytecode, as an installed mirrord does; a stale .pyc is not used."""
    for name in ("mirrord", "bench"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"WHO = {name!r}\n")

    def find_spec(name: str) -> importlib.machinery.ModuleSpec:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(tmp_path / name)]
        return spec

    monkeypatch.setattr(bench_main.importlib.util, "find_spec", find_spec)
    assert bench_main.compile_bytecode() == [str(tmp_path / "mirrord"), str(tmp_path / "bench")]
    for name in ("mirrord", "bench"):
        assert list((tmp_path / name / "__pycache__").glob("__init__.*.pyc"))
    # Changed after compiling (another size): the child imports the new source, not the old bytecode.
    (tmp_path / "mirrord" / "__init__.py").write_text("WHO = 'changed source'\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run(
        [sys.executable, "-c", "import mirrord; print(mirrord.WHO)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "changed source"
