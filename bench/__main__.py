"""``python -m bench [--quick] [--scenario NAME] ...`` (``make bench BENCH_ARGS=...``).

NAME: corpus, small, big, scale, tags, tags10k or all.

Exit status: 0 when every run succeeded and every target was met, 1 when a run failed or a target was
missed, 2 when a prerequisite is missing (docker-registry, skopeo) or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench.corpus import CorpusSpec
from bench.registries import BenchError
from bench.report import Check, print_result
from bench.scenarios import (
    Bench,
    ScenarioResult,
    median_of,
    run_big,
    run_corpus,
    run_scale,
    run_small,
    run_tags,
    small_spec,
    tags_spec,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
QUICK = {"repos": 4, "tags": 2, "base_mb": 2.0, "app_mb": 1.0, "big_gb": 0.25, "scale": "4,8,16"}
#: The many-tags scenarios: (repositories, tags each, daemon passes), full and ``--quick``.
MANY_TAGS = {"tags": ((20, 100, 5), (4, 10, 2)), "tags10k": ((100, 100, 10), (5, 20, 3))}
SCENARIOS = ["corpus", "small", "big", "scale", "tags", "tags10k"]


def build_parser() -> argparse.ArgumentParser:
    """The command line; size flags left unset take the default or the ``--quick`` value."""
    p = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark mirrord against skopeo and the floor"
    )
    p.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        default="all",
        help="all: corpus, small, big, scale and tags (tags10k only by name: seeding it takes minutes)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for trying the harness out")
    p.add_argument("--repos", type=int, help="repositories (default 20; quick 4)")
    p.add_argument("--tags", type=int, help="tags per repository (default 3; quick 2)")
    p.add_argument("--platforms", type=int, default=3, help="platforms per index (default 3)")
    p.add_argument("--base-mb", type=float, help="per-platform base layer MiB (default 16; quick 2)")
    p.add_argument("--app-mb", type=float, help="per-tag app layer MiB (default 4; quick 1)")
    p.add_argument("--big-gb", type=float, help="scenario big: layer GiB (default 2; quick 0.25)")
    p.add_argument("--scale", help="scenario scale: repository counts (default 10,40,160; quick 4,8,16)")
    p.add_argument("--scale-base-mb", type=float, default=1.0, help="scenario scale: base layer MiB")
    p.add_argument("--scale-app-mb", type=float, default=0.125, help="scenario scale: app layer MiB")
    p.add_argument("--concurrency", type=int, default=8, help="floor copier streams (mirrord's default: 8)")
    p.add_argument("--repeat", type=int, default=1, help="run everything N times; report each run's median")
    p.add_argument("--seed", default="mirrord-bench-1", help="corpus seed")
    p.add_argument("--no-skopeo", action="store_true", help="skip skopeo in scenarios corpus and small")
    p.add_argument("--fresh", action="store_true", help="reseed sources even if a kept copy matches")
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="do not byte-compile mirrord and bench first (measure a checkout without .pyc files)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work, logs and results.json (bench/out)")
    return p


def _pick(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name)
    if value is not None:
        return value
    return QUICK[name] if args.quick else default


def _run(args: argparse.Namespace, bench: Bench) -> list[ScenarioResult]:
    results = []
    wanted = {"corpus", "small", "big", "scale", "tags"} if args.scenario == "all" else {args.scenario}
    if "corpus" in wanted:
        spec = CorpusSpec(
            repos=_pick(args, "repos", 20),
            tags=_pick(args, "tags", 3),
            platforms=args.platforms,
            base_mb=_pick(args, "base_mb", 16.0),
            app_mb=_pick(args, "app_mb", 4.0),
            seed=args.seed,
        )
        print(f"== corpus: {spec}", flush=True)
        results.append(run_corpus(bench, spec, skopeo=not args.no_skopeo))
    if "small" in wanted:
        spec = small_spec(args.seed)
        if args.quick:
            spec = dataclasses.replace(spec, repos=8)
        print(f"== small: {spec.repos} small single-platform images", flush=True)
        results.append(run_small(bench, spec, skopeo=not args.no_skopeo))
    if "big" in wanted:
        gib = _pick(args, "big_gb", 2.0)
        print(f"== big: one {gib} GiB layer", flush=True)
        results.append(run_big(bench, gib, args.seed))
    if "scale" in wanted:
        sizes = sorted(int(n) for n in _pick(args, "scale", "10,40,160").split(","))
        spec = CorpusSpec(
            repos=sizes[-1],
            tags=_pick(args, "tags", 3),
            platforms=args.platforms,
            base_mb=args.scale_base_mb,
            app_mb=args.scale_app_mb,
            seed=args.seed,
            prefix="scale",
        )
        print(f"== scale: {sizes} repositories of {spec}", flush=True)
        results.append(run_scale(bench, sizes, spec))
    for name, (full, quick) in MANY_TAGS.items():
        if name in wanted:
            repos, tags, passes = quick if args.quick else full
            print(f"== {name}: {repos} repositories x {tags} tiny single-manifest images", flush=True)
            results.append(run_tags(bench, name, tags_spec(repos, tags, args.seed), passes))
    return results


def compile_bytecode() -> list[str]:
    """Byte-compile the ``mirrord`` and ``bench`` packages the measured children import; their folders.

    An installed mirrord runs from bytecode: pip compiles a wheel at install, the container image runs
    ``compileall`` (Dockerfile). An editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` has no
    ``.pyc`` files, so every measured ``python -m mirrord`` compiled its ~80 modules from source again
    (about 0.06 s of CPU, a fifth of a no-op pass) while aiohttp, the HEAD loop's import, came compiled
    from site-packages. ``compileall`` writes regardless of that variable; a ``.pyc`` whose source
    changed later is not used (Python checks the source's size and mtime), so no run sees stale code.
    """
    folders = []
    for name in ("mirrord", "bench"):
        spec = importlib.util.find_spec(name)
        locations = spec.submodule_search_locations if spec is not None else None
        if not locations:
            raise BenchError(f"cannot find the {name} package to byte-compile")
        folder = locations[0]
        compileall.compile_dir(folder, quiet=1)
        folders.append(folder)
    return folders


def _host() -> dict[str, Any]:
    skopeo = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "skopeo": skopeo.strip(),
    }


def _write(
    out: Path, args: argparse.Namespace, started: float, results: list[ScenarioResult], checks: list[Check]
) -> Path:
    path = out / "results.json"
    body = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "argv": sys.argv[1:],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "host": _host(),
        "scenarios": [r.to_json() for r in results],
        "checks": [c.to_json() for c in checks],
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def _sigterm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the Ctrl-C path, so every registry and child is stopped on the way out.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios; print the tables and write ``results.json``."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    # Started in the background by a shell without job control, SIGINT arrives ignored; Ctrl-C (or a
    # `kill -INT`) must still stop the run and take every registry and child down with it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.out, concurrency=args.concurrency, fresh=args.fresh)
    try:
        if not args.no_compile:
            print(f"bytecode compiled: {', '.join(compile_bytecode())} (--no-compile: run from source)")
        repeats = [_run(args, bench) for _ in range(args.repeat)]
        results = [median_of(rs) for rs in zip(*repeats, strict=True)]
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted; registries and children stopped", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(OSError):
            (args.out / "work").rmdir()  # empty unless another bench runs right now
    checks = [c for r in results for c in print_result(r)]
    path = _write(args.out, args, started, results, checks)
    sources = args.out / "sources"
    kept = sum(f.stat().st_size for f in sources.rglob("*") if f.is_file()) if sources.exists() else 0
    print(f"\nseeded sources kept for the next run: {kept / 1e9:.1f} GB in {sources} (--fresh reseeds)")
    passed = sum(c.ok for c in checks)
    print(f"targets met: {passed} of {len(checks)}; results: {path}")
    failed = any(m.process.exit_code != 0 for r in results for m in r.runs) or not all(c.ok for c in checks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
