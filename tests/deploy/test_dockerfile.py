"""The container image, checked statically: hadolint, the runtime stage's contract (non-root, entrypoint,
plan path, OCI labels), the build context, and the daemon itself on a read-only root filesystem (a private
mount namespace standing in for ``docker run --read-only``). tests/image builds and runs it for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.deploy.tools import ROOT, run_tool, venv_tool
from tests.e2e.helpers import images, seed, write_plan
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import in_ci, require_tool

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case) and its argument text, continuations joined."""

    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile (comments and blank lines dropped, ``\\`` continuations joined)."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    return out


def stages(text: str) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each group starts with its FROM)."""
    groups: list[list[Instruction]] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(ins)
    return groups


def _runtime() -> list[Instruction]:
    return stages(DOCKERFILE.read_text())[-1]


def _values(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.args for i in stage if i.keyword == keyword]


@pytest.mark.integration
def test_hadolint_passes() -> None:
    ran = run_tool([venv_tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE)])
    assert ran.code == 0, ran.output


@pytest.mark.integration
def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    # Shows the linter is really judging: an unpinned base, root, and apt without cleanup all fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install curl\nCMD mirrord run\n")
    ran = run_tool([venv_tool("hadolint"), str(bad)])
    assert ran.code != 0
    for rule in ("DL3007", "DL3008", "DL3015"):
        assert rule in ran.output


def test_multi_stage_on_a_slim_python_base() -> None:
    groups = stages(DOCKERFILE.read_text())
    assert len(groups) >= 2
    args = {line.split("=", 1)[0].split()[-1]: line.split("=", 1)[1] for line in _arg_defaults()}
    base = args["PYTHON_IMAGE"]
    assert base.startswith("python:3.1")
    assert "-slim" in base
    assert any("COPY --from=build" in i.args or i.args.startswith("--from=build") for i in groups[-1])


def _arg_defaults() -> list[str]:
    return [
        f"ARG {i.args}" for i in instructions(DOCKERFILE.read_text()) if i.keyword == "ARG" and "=" in i.args
    ]


def test_runtime_runs_as_a_numeric_non_root_user() -> None:
    (user,) = _values(_runtime(), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0


def test_entrypoint_is_mirrord_run_with_the_plan_in_etc() -> None:
    runtime = _runtime()
    (entrypoint,) = _values(runtime, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["mirrord", "run"]
    env = " ".join(_values(runtime, "ENV"))
    assert "MIRRORD_CONFIG=/etc/mirrord/mirrord.yaml" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "MIRRORD_STATE_DIR=/var/lib/mirrord" in env
    assert "/var/lib/mirrord" in " ".join(_values(runtime, "VOLUME"))
    assert "9402" in _values(runtime, "EXPOSE")


def test_oci_labels() -> None:
    labels = " ".join(_values(_runtime(), "LABEL"))
    for key in ("title", "description", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_build_context_admits_only_the_build_inputs() -> None:
    lines = [x.strip() for x in DOCKERIGNORE.read_text().splitlines() if x.strip() and not x.startswith("#")]
    # Deny everything first, then re-admit: a new secret or venv in the tree can never leak into a build.
    assert lines[0] == "*"
    admitted = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    for copy in _values(stages(DOCKERFILE.read_text())[0], "COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert source.rstrip("/") in admitted, f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _read_only_root_prefix(writable: Path) -> list[str]:
    """A command prefix running the rest in a private mount namespace whose root is read-only except
    ``writable`` (like ``docker run --read-only`` with a state volume). Fails (CI) or skips if
    namespaces are not available."""
    unshare = require_tool("unshare")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro / && exec "$@"'
    prefix = [unshare, "-m", "--propagation", "private", "sh", "-c", script, str(writable)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        message = f"cannot make a read-only mount namespace: {probe.stderr.decode().strip()}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # The namespace really is read-only outside ``writable``, and writable inside it.
    check = 'if touch "$1/.ro-probe" 2>/dev/null; then exit 1; fi; touch "$0/.rw-probe"'
    ran = subprocess.run(
        [*prefix, "sh", "-c", check, str(writable), str(ROOT)], capture_output=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert not (ROOT / ".ro-probe").exists()
    return prefix


async def _status(url: str) -> dict[str, object] | None:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with aiohttp.ClientSession() as session, session.get(url + "/status") as resp:
            if resp.status == 200:
                body: dict[str, object] = await resp.json()
                return body
    return None


@pytest.mark.integration
async def test_daemon_runs_on_a_read_only_root(
    plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    await seed(plain_registry.host, unique_repo, images("1.0"))
    work = tmp_path / "rw"
    work.mkdir()
    plan = write_plan(
        work / "mirrord.yaml",
        f"""
        version: 1
        registries:
          {plain_registry.host}: {{tls: false}}
        sync:
          - name: ro
            source: {plain_registry.host}/{unique_repo}
            target: oci:{work}/layout
            tags: ['1.0']
            interval: 1h
        """,
    )
    port = _free_port()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", HOME=str(work), TMPDIR=str(work))
    env.update(MIRRORD_STATE_DIR=str(work / "state"))
    command = [sys.executable, "-m", "mirrord", "run", "-c", str(plan), "--listen", f"127.0.0.1:{port}"]
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *_read_only_root_prefix(work), *command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 60
        entry: object = None
        while time.monotonic() < deadline and proc.returncode is None:
            status = await _status(f"http://127.0.0.1:{port}")
            entries = status["entries"] if status else {}
            entry = entries.get("ro") if isinstance(entries, dict) else None
            if isinstance(entry, dict) and entry.get("result"):
                break
            await asyncio.sleep(0.2)
        assert isinstance(entry, dict), log.read_text()
        assert entry["result"] == "success", (entry, log.read_text())
        assert (work / "layout" / "index.json").is_file()
        assert (work / "state" / "locations.json").is_file()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Read-only file system" not in log.read_text()
