"""The scenarios: ``corpus`` (floor, skopeo, mirrord), ``small`` (144 small images: per-image cost),
``big`` (one 2 GiB layer), ``scale``, and the many-tags ``tags`` / ``tags10k``.

A :class:`Bench` owns every process and directory it starts (through one ``ExitStack``), seeds each
source once (kept under ``bench/out/sources/<spec key>`` and reused by later runs unless ``fresh``), and
gives every measured run a fresh target registry that is deleted right after its phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import tools
from bench.corpus import Corpus, CorpusSpec
from bench.daemon import Daemon
from bench.floor import write_blob_list
from bench.measure import ProcessResult, RequestStats, machine_busy_seconds, run_measured
from bench.registries import Registry, free_port, registry, require_tool
from bench.seed import head_digests, seed_corpus

#: mirrord keeps blob locations across runs where these point: a cold run must start without any.
STATE_ENV = ("MIRRORD_STATE_DIR", "STATE_DIRECTORY")
#: Nothing-changed passes timed in one running daemon (the median is reported).
DAEMON_PASSES = 5
#: Scenario ``small``: how many small single-platform images (one repository each).
SMALL_IMAGES = 144


@dataclass
class Measurement:
    """One measured run: the process, requests at the source and each target, bytes stored at each
    target, and ``check`` — whether every tag arrived with the source's digest ("ok", "n/a", or why not).
    """

    name: str
    process: ProcessResult
    source: RequestStats
    targets: list[RequestStats]
    stored: list[int]
    check: str = "n/a"
    #: Wall seconds of every repetition when the scenario ran more than once (this one is the median).
    samples: list[float] = field(default_factory=list)
    #: CPU seconds the source and each target registry spent during the run (they share the cores).
    registry_cpu: list[float] = field(default_factory=list)
    #: CPU seconds the rest of the machine (not the tool, the registries or the harness) used during
    #: the run: other work sharing the cores skews every figure.
    other_cpu: float = 0.0
    #: Daemon passes: the daemon's resident set size after each pass, in run order (flat, or it leaks).
    rss_samples: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "process": self.process.to_json(),
            "source_requests": self.source.to_json(),
            "target_requests": [t.to_json() for t in self.targets],
            "target_stored_bytes": self.stored,
            "check": self.check,
            "wall_samples_s": [round(w, 3) for w in self.samples],
            "registry_cpu_s": [round(c, 2) for c in self.registry_cpu],
            "other_cpu_s": round(self.other_cpu, 2),
        } | ({"rss_samples": self.rss_samples} if self.rss_samples else {})


@dataclass
class ScenarioResult:
    """A scenario's corpus facts and its measurements, in run order."""

    name: str
    facts: dict[str, Any]
    runs: list[Measurement] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def run(self, name: str) -> Measurement | None:
        """The measurement called ``name``, if it ran."""
        return next((m for m in self.runs if m.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"name": self.name, "facts": self.facts, "runs": [m.to_json() for m in self.runs]} | self.extra


class Bench:
    """Runs scenarios under ``out``. Every registry and child process it starts is stopped (and its
    directory deleted) when the ``with`` block or call that started it ends, also on Ctrl-C."""

    def __init__(self, out: Path, *, concurrency: int = 8, fresh: bool = False) -> None:
        self.out = out
        self.concurrency = concurrency
        self.fresh = fresh
        self.logs = out / "logs"
        self._serial = 0

    # -- registries ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def source(self, spec: CorpusSpec) -> Iterator[tuple[Registry, Corpus]]:
        """A registry serving the seeded corpus ``spec`` (seeding it unless a kept copy matches)."""
        home = self.out / "sources" / f"{spec.prefix}-{spec.key()}"
        record = home / "corpus.json"
        if self.fresh or not record.exists():
            shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        with registry(self._workdir("source"), home / "storage") as reg:
            yield reg, self._corpus(reg, spec, home)

    def _corpus(self, reg: Registry, spec: CorpusSpec, home: Path) -> Corpus:
        record = home / "corpus.json"
        if record.exists():
            corpus = Corpus.from_json(json.loads(record.read_text()))
            print(f"source {reg.host}: reusing {home}", flush=True)
        else:
            start = time.perf_counter()
            corpus = asyncio.run(seed_corpus(reg.host, spec))
            record.write_text(json.dumps(corpus.to_json()))
            print(f"source {reg.host}: seeded in {time.perf_counter() - start:.1f} s ({home})", flush=True)
        return corpus

    @contextlib.contextmanager
    def targets(self, count: int) -> Iterator[list[Registry]]:
        """``count`` fresh, empty target registries, deleted on exit."""
        with ExitStack() as inner:
            yield [inner.enter_context(registry(self._workdir("target"))) for _ in range(count)]

    def _workdir(self, kind: str) -> Path:
        self._serial += 1
        return self.out / "work" / f"{kind}-{os.getpid()}-{self._serial}"

    # -- measuring ----------------------------------------------------------------------------

    def measure(
        self, name: str, argv: Sequence[str], source: Registry, targets: Sequence[Registry]
    ) -> Measurement:
        """Run ``argv`` as a child process and collect what the registries saw during it."""
        regs = (source, *targets)
        marks = [r.mark() for r in regs]
        busy, own = machine_busy_seconds(), time.process_time()
        cpu = [r.cpu_seconds() for r in regs]
        env = {k: v for k, v in os.environ.items() if k not in STATE_ENV} | {"PYTHONPATH": str(tools.ROOT)}
        print(f"  {name} ...", end="", flush=True)
        proc = run_measured(argv, self.logs / f"{name}.log", env=env)
        stats = [r.requests_since(m) for r, m in zip(regs, marks, strict=True)]
        cpu = [r.cpu_seconds() - c for r, c in zip(regs, cpu, strict=True)]
        busy = machine_busy_seconds() - busy - (time.process_time() - own) - proc.cpu_s - sum(cpu)
        status = "" if proc.exit_code == 0 else f" (exit {proc.exit_code}, see {proc.log})"
        print(f" {proc.wall_s:.2f} s{status}", flush=True)
        stored = [t.stored_blob_bytes() for t in targets]
        return Measurement(name, proc, stats[0], stats[1:], stored, registry_cpu=cpu, other_cpu=busy)

    def check(
        self,
        m: Measurement,
        corpus: Corpus,
        repos: Sequence[str],
        targets: Sequence[Registry],
        rename: Callable[[str], str],
    ) -> None:
        """Set ``m.check``: every tag of ``repos`` at each target has the source's index digest."""
        wanted = {(rename(r), t): d for r in repos for t, d in corpus.tags[r].items()}
        bad = 0
        for target in targets:
            got = asyncio.run(head_digests(target.host, wanted))
            bad += sum(1 for ref, digest in wanted.items() if got[ref] != digest)
        m.check = "ok" if bad == 0 else f"{bad} of {len(wanted) * len(targets)} tags missing or different"

    # -- the three tools ------------------------------------------------------------------------

    def floor(
        self, name: str, corpus: Corpus, repos: Sequence[str], source: Registry, *, targets: int = 1
    ) -> Measurement:
        """The floor copier into ``targets`` fresh targets (each blob read once for all of them)."""
        blob_list = self.logs / f"{name}-blobs.json"
        blob_list.parent.mkdir(parents=True, exist_ok=True)
        write_blob_list(blob_list, corpus.distinct_blobs(repos), corpus.blobs)
        with self.targets(targets) as regs:
            first, *also = [r.host for r in regs]
            argv = tools.floor_argv(source.host, first, blob_list, self.concurrency, also)
            return self.measure(name, argv, source, regs)

    def skopeo(self, corpus: Corpus, repos: Sequence[str], source: Registry) -> list[Measurement]:
        """``skopeo sync --all`` cold into a fresh target, then again with nothing changed."""
        require_tool("skopeo")
        with self.targets(1) as (target,):
            argv = tools.skopeo_argv(corpus, repos, source.host, target.host, self.logs)
            cold = self.measure("skopeo-cold", argv, source, [target])
            self.check(cold, corpus, repos, [target], tools.skopeo_repo)
            again = self.measure("skopeo-again", argv, source, [target])
        return [cold, again]

    def mirrord(
        self,
        prefix: str,
        corpus: Corpus,
        repos: Sequence[str],
        source: Registry,
        *,
        targets: int = 1,
        again: bool = True,
        daemon_passes: int = 0,
        headloop: bool = False,
    ) -> list[Measurement]:
        """``mirrord sync`` cold into ``targets`` fresh targets, then (``again``) with nothing changed,
        then (``daemon_passes`` > 0) that many nothing-changed passes in one ``mirrord run``, reported
        as one measurement: the median pass, with every pass's wall time in ``samples``; with
        ``headloop``, the bare HEAD loop runs right after ``again`` against the same registries."""
        with self.targets(targets) as regs:
            plan = self.logs / f"{prefix}-plan.yaml"
            plan.write_text(tools.mirrord_plan(corpus, repos, source.host, [r.host for r in regs]))
            argv = tools.mirrord_argv(plan, self.logs / f"{prefix}-report.json")
            cold = self.measure(f"{prefix}-cold", argv, source, regs)
            self.check(cold, corpus, repos, regs, tools.mirrord_repo)
            runs = [cold]
            if again:
                runs.append(self.measure(f"{prefix}-again", argv, source, regs))
            if headloop:
                runs.append(self.headloop(f"{prefix}-headloop", corpus, repos, source, regs))
            if daemon_passes:
                daemon_plan = self.logs / f"{prefix}-daemon-plan.yaml"
                daemon_plan.write_text(tools.daemon_plan(plan.read_text()))
                name = f"{prefix}-daemon-again"
                runs.append(self.daemon_again(name, daemon_plan, source, regs, daemon_passes))
        return runs

    def headloop(
        self, name: str, corpus: Corpus, repos: Sequence[str], source: Registry, targets: Sequence[Registry]
    ) -> Measurement:
        """The bare HEAD loop (:mod:`bench.headloop`) over every tag of ``repos``, at the source and at
        ``targets`` (which must hold mirrord's copy): the yardstick of a nothing-changed pass."""
        refs = self.logs / f"{name}-refs.json"
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(json.dumps([[r, t] for r in repos for t in corpus.tags[r]]))
        argv = tools.headloop_argv(source.host, refs, [t.host for t in targets], self.concurrency)
        return self.measure(name, argv, source, targets)

    def daemon_again(
        self, name: str, plan: Path, source: Registry, targets: Sequence[Registry], passes: int
    ) -> Measurement:
        """``passes`` nothing-changed passes triggered in one running daemon; the median pass."""
        env = {k: v for k, v in os.environ.items() if k not in STATE_ENV} | {"PYTHONPATH": str(tools.ROOT)}
        port = free_port()
        argv = tools.daemon_argv(plan, f"127.0.0.1:{port}")
        print(f"  {name} ...", end="", flush=True)
        samples, rss = [], []
        with Daemon(argv, port, self.logs / f"{name}.log", env) as daemon:
            for _ in range(passes):
                samples.append(self._daemon_pass(name, daemon, argv, source, targets))
                rss.append(daemon.rss())
        samples.sort(key=lambda m: m.process.wall_s)
        pick = samples[(len(samples) - 1) // 2]
        pick.samples = [m.process.wall_s for m in samples]
        pick.rss_samples = rss
        print(" " + ", ".join(f"{w:.3f}" for w in pick.samples) + " s", flush=True)
        return pick

    def _daemon_pass(
        self, name: str, daemon: Daemon, argv: Sequence[str], source: Registry, targets: Sequence[Registry]
    ) -> Measurement:
        regs = (source, *targets)
        marks = [r.mark() for r in regs]
        cpu = [r.cpu_seconds() for r in regs]
        busy, own, mine = machine_busy_seconds(), time.process_time(), daemon.cpu_seconds()
        wall, ok = daemon.run_pass()
        mine = daemon.cpu_seconds() - mine
        stats = [r.requests_since(m) for r, m in zip(regs, marks, strict=True)]
        cpu = [r.cpu_seconds() - c for r, c in zip(regs, cpu, strict=True)]
        busy = machine_busy_seconds() - busy - (time.process_time() - own) - mine - sum(cpu)
        proc = ProcessResult(tuple(argv), 0 if ok else 1, wall, mine, daemon.peak_rss(), daemon.log)
        stored = [t.stored_blob_bytes() for t in targets]
        return Measurement(name, proc, stats[0], stats[1:], stored, registry_cpu=cpu, other_cpu=busy)


def corpus_facts(corpus: Corpus, repos: Sequence[str]) -> dict[str, Any]:
    """Sizes of the part of ``corpus`` that ``repos`` cover."""
    return {
        "spec": corpus.spec.__dict__ | {"repos": len(repos)},
        "repositories": len(repos),
        "tags": corpus.tag_count(repos),
        "manifests": sum(corpus.manifests[r] for r in repos),
        "distinct_blobs": len(corpus.distinct_blobs(repos)),
        "unique_bytes": corpus.unique_bytes(repos),
        "referenced_bytes": corpus.referenced_bytes(repos),
    }


def yardsticks(
    bench: Bench, corpus: Corpus, repos: Sequence[str], source: Registry, *, skopeo: bool
) -> list[Measurement]:
    """What mirrord is compared with: the floor, skopeo cold and again (unless ``skopeo`` is false),
    and the start-up probe (the interpreter and mirrord's imports, no work)."""
    runs = [bench.floor("floor", corpus, repos, source)]
    if skopeo:
        runs.extend(bench.skopeo(corpus, repos, source))
    runs.append(bench.measure("mirrord-startup", tools.startup_argv(), source, []))
    return runs


def run_corpus(bench: Bench, spec: CorpusSpec, *, skopeo: bool = True) -> ScenarioResult:
    """Scenario 1: floor, skopeo cold/again, mirrord cold/again, mirrord with two targets."""
    repos = spec.repo_names()
    with bench.source(spec) as (source, corpus):
        result = ScenarioResult("corpus", corpus_facts(corpus, repos))
        result.runs.extend(yardsticks(bench, corpus, repos, source, skopeo=skopeo))
        result.runs.extend(bench.mirrord("mirrord", corpus, repos, source, daemon_passes=DAEMON_PASSES))
        result.runs.append(bench.floor("floor-2targets", corpus, repos, source, targets=2))
        result.runs.extend(bench.mirrord("mirrord-2targets", corpus, repos, source, targets=2, again=False))
    return result


def small_spec(seed: str) -> CorpusSpec:
    """144 small single-platform images, one per repository: a 1 MiB base layer every repository shares,
    a 256 KiB layer of its own and a config. The cost here is per image, not per byte."""
    return CorpusSpec(
        repos=SMALL_IMAGES,
        tags=1,
        platforms=1,
        base_mb=1.0,
        app_mb=0.25,
        seed=seed,
        prefix="small",
        index=False,
    )


def run_small(bench: Bench, spec: CorpusSpec, *, skopeo: bool = True) -> ScenarioResult:
    """Scenario ``small``: the floor, skopeo cold/again and mirrord cold/again over ``spec``."""
    repos = spec.repo_names()
    with bench.source(spec) as (source, corpus):
        result = ScenarioResult("small", corpus_facts(corpus, repos))
        result.runs.extend(yardsticks(bench, corpus, repos, source, skopeo=skopeo))
        result.runs.extend(bench.mirrord("mirrord", corpus, repos, source))
    return result


def run_big(bench: Bench, gib: float, seed: str) -> ScenarioResult:
    """Scenario 2: one image with one ``gib`` GiB layer; the floor and mirrord, peak RSS and MB/s."""
    spec = CorpusSpec(repos=1, tags=1, platforms=1, base_mb=gib * 1024, app_mb=0, seed=seed, prefix="big")
    repos = spec.repo_names()
    with bench.source(spec) as (source, corpus):
        result = ScenarioResult("big", corpus_facts(corpus, repos))
        result.runs.append(bench.floor("big-floor", corpus, repos, source))
        result.runs.extend(bench.mirrord("big-mirrord", corpus, repos, source, again=False))
    return result


def run_scale(bench: Bench, sizes: Sequence[int], spec: CorpusSpec) -> ScenarioResult:
    """Scenario 3: the first N repositories of one seeded corpus for each N in ``sizes``."""
    result = ScenarioResult("scale", {"spec": spec.__dict__, "sizes": list(sizes)})
    points = []
    with bench.source(spec) as (source, corpus):
        for n in sizes:
            repos = corpus.subset(n)
            facts = corpus_facts(corpus, repos)
            floor = bench.floor(f"scale-{n}-floor", corpus, repos, source)
            (cold,) = bench.mirrord(f"scale-{n}-mirrord", corpus, repos, source, again=False)
            result.runs.extend([floor, cold])
            points.append(facts | {"floor": floor.name, "mirrord": cold.name})
    result.extra["points"] = points
    return result


def tags_spec(repos: int, tags: int, seed: str) -> CorpusSpec:
    """Many tiny single-manifest images: ``repos`` x ``tags``, each tag a manifest over a 64 KiB base
    layer shared by every repository, the previous tag's 4 KiB app layer and its own, and its config."""
    return CorpusSpec(
        repos=repos,
        tags=tags,
        platforms=1,
        base_mb=1 / 16,
        app_mb=1 / 256,
        seed=seed,
        prefix="tags",
        index=False,
    )


def run_tags(bench: Bench, name: str, spec: CorpusSpec, daemon_passes: int) -> ScenarioResult:
    """Scenarios ``tags`` (2,000) and ``tags10k``: the cost of many tags. mirrord cold, then nothing
    changed from the CLI, the bare HEAD loop over the same registries (the yardstick), and
    ``daemon_passes`` nothing-changed passes in one daemon (RSS after each)."""
    repos = spec.repo_names()
    with bench.source(spec) as (source, corpus):
        result = ScenarioResult(name, corpus_facts(corpus, repos))
        result.runs.append(bench.measure("mirrord-startup", tools.startup_argv(), source, []))
        result.runs.extend(
            bench.mirrord("mirrord", corpus, repos, source, daemon_passes=daemon_passes, headloop=True)
        )
    return result


def median_of(repeats: Sequence[ScenarioResult]) -> ScenarioResult:
    """One result from repetitions of a scenario: per run name, the repetition with the median wall
    time (a whole measurement, so its requests and RSS stay consistent), with every wall time kept."""
    first = repeats[0]
    merged = ScenarioResult(first.name, first.facts, extra=first.extra)
    for i in range(len(first.runs)):
        samples = sorted((r.runs[i] for r in repeats), key=lambda m: m.process.wall_s)
        pick = samples[(len(samples) - 1) // 2]
        pick.samples = [m.process.wall_s for m in samples]
        merged.runs.append(pick)
    return merged
