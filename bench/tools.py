"""How each measured tool is invoked: the floor, ``skopeo sync --all`` and ``mirrord sync``.

Every builder returns an argv (and writes the tool's input file); :func:`bench.measure.run_measured`
runs it. Target repository names: the floor keeps the source name, skopeo writes ``skopeo/<base>``
(``skopeo sync`` without ``--scoped`` keeps only the last path component) and mirrord
``mirror/<base>``, so a copy can be checked tag by tag.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from bench.corpus import Corpus

ROOT = Path(__file__).resolve().parent.parent


def skopeo_repo(repo: str) -> str:
    """Where ``skopeo sync`` (unscoped, destination ``HOST/skopeo``) puts ``repo``."""
    return "skopeo/" + repo.rsplit("/", 1)[-1]


def mirrord_repo(repo: str) -> str:
    """Where the bench's mirrord plan puts ``repo``."""
    return "mirror/" + repo.rsplit("/", 1)[-1]


def floor_argv(
    source: str, target: str, blob_list: Path, concurrency: int, also: Sequence[str] = ()
) -> list[str]:
    """The floor copier as a child process (``also``: more targets, each blob read once for all)."""
    return [
        sys.executable,
        "-m",
        "bench.floor",
        source,
        target,
        str(blob_list),
        f"--concurrency={concurrency}",
        *(f"--also={host}" for host in also),
    ]


def skopeo_argv(corpus: Corpus, repos: Sequence[str], source: str, target: str, workdir: Path) -> list[str]:
    """``skopeo sync --all`` from a YAML list of every repo and tag to ``target/skopeo``.

    ``--src yaml`` is how skopeo takes an explicit list of repositories and tags (``--src docker``
    takes one repository per run). TLS is off on both sides: the registries speak plain HTTP.
    """
    images = {repo: list(corpus.tags[repo]) for repo in repos}
    listing = {source: {"tls-verify": False, "images": images}}
    path = workdir / "skopeo-sync.yaml"
    path.write_text(yaml.safe_dump(listing, sort_keys=False))
    return [
        "skopeo",
        "sync",
        "--all",
        "--src",
        "yaml",
        "--dest",
        "docker",
        "--dest-tls-verify=false",
        str(path),
        f"{target}/skopeo",
    ]


def mirrord_plan(corpus: Corpus, repos: Sequence[str], source: str, targets: Sequence[str]) -> str:
    """A sync plan (YAML) with one entry per repository, its exact tags, and every target."""
    registries = {host: {"tls": False} for host in (source, *targets)}
    entries = [
        {
            "name": repo.rsplit("/", 1)[-1],
            "source": f"{source}/{repo}",
            "targets": [f"{t}/{mirrord_repo(repo)}" for t in targets],
            "tags": list(corpus.tags[repo]),
        }
        for repo in repos
    ]
    plan = {"version": 1, "registries": registries, "sync": entries}
    return "# written by bench/tools.py\n" + yaml.safe_dump(plan, sort_keys=False)


def daemon_plan(plan_text: str) -> str:
    """``plan_text`` with a one-hour interval for every entry, so that in the daemon only the passes
    the bench triggers (``POST /sync``) run while it measures."""
    return plan_text.replace("\nsync:", "\ndefaults:\n  interval: 1h\nsync:", 1)


def daemon_argv(plan: Path, listen: str) -> list[str]:
    """``mirrord run -c PLAN --listen HOST:PORT`` with JSON logs (to the run's log file)."""
    run = ["run", "-c", str(plan), "--listen", listen]
    return [sys.executable, "-m", "mirrord", "--log-format", "json", *run]


def headloop_argv(source: str, refs: Path, targets: Sequence[str], concurrency: int) -> list[str]:
    """The bare aiohttp HEAD loop (:mod:`bench.headloop`) over the tags listed in ``refs``."""
    return [
        sys.executable,
        "-m",
        "bench.headloop",
        source,
        str(refs),
        *targets,
        f"--concurrency={concurrency}",
    ]


def startup_argv() -> list[str]:
    """A Python process that only imports what ``mirrord sync`` imports: the fixed cost of every run."""
    imports = "import mirrord.cli, mirrord.sync.runner, mirrord.registry.hub, mirrord.plan"
    return [sys.executable, "-c", imports]


def mirrord_argv(plan: Path, report: Path) -> list[str]:
    """``mirrord sync -c PLAN --no-progress --report REPORT`` with JSON logs (to the run's log file)."""
    return [
        sys.executable,
        "-m",
        "mirrord",
        "--log-format",
        "json",
        "sync",
        "-c",
        str(plan),
        "--no-progress",
        "--report",
        str(report),
    ]
