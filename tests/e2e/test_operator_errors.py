"""Operator mistakes through the real CLI: one line, exit 2, checked before any work; bugs say so."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, entry_plan, images, run_cli, seed, tags_at
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


async def test_report_into_a_missing_folder_fails_before_any_copy(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    plan = entry_plan(tmp_path / "p.yaml", plain_registry.host, target.host, unique_repo, "[1.0]", name="e")
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "missing" / "r.json"))
    assert result.code == 2
    assert _one_line(result.stderr) == (
        f"mirrord: --report {tmp_path}/missing/r.json: the folder {tmp_path}/missing does not exist"
    )
    assert await tags_at(target.host, unique_repo) == []  # nothing was copied


async def test_state_dir_on_a_file_and_unknown_entries_are_one_line(tmp_path: Path) -> None:
    plan = entry_plan(tmp_path / "p.yaml", "127.0.0.1:9", "127.0.0.1:7", "a", "[x]", name="only")
    (tmp_path / "file").write_text("")
    for command in ("sync", "run"):
        result = await run_cli(command, "-c", str(plan), "--state-dir", str(tmp_path / "file"))
        assert result.code == 2
        assert _one_line(result.stderr) == f"mirrord: --state-dir {tmp_path}/file: is a file, not a folder"
    result = await run_cli("sync", "-c", str(plan), "--entry", "nope")
    assert result.code == 2
    assert _one_line(result.stderr) == f"mirrord: --entry 'nope': no such entry in {plan}; entries: 'only'"


async def test_run_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    plan = entry_plan(tmp_path / "p.yaml", "127.0.0.1:9", "127.0.0.1:7", "a", "[x]", name="only")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await run_cli("run", "-c", str(plan), "--listen", f"127.0.0.1:{port}")
    assert result.code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"mirrord: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in result.stderr


async def test_bad_layout_paths_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = await run_cli("copy", f"oci:{tmp_path}/nope:1", f"oci:{tmp_path}/out:1")
    assert result.code == 2
    assert _one_line(result.stderr) == f"mirrord: oci:{tmp_path}/nope:1: no such folder {tmp_path}/nope"
    result = await run_cli("copy", "127.0.0.1:9/a:1", f"oci:{tmp_path}/file/out:1")
    assert result.code == 2
    assert _one_line(result.stderr) == (
        f"mirrord: oci:{tmp_path}/file/out:1: cannot create {tmp_path}/file/out: {tmp_path}/file is a file"
    )


@pytest.mark.tools("skopeo")
async def test_copy_takes_docker_prefix_and_lists_tags_when_one_is_missing(
    plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    await seed(plain_registry.host, unique_repo, images("1.0", "2.0"))
    layout = tmp_path / "layout"
    for tag in ("1.0", "2.0"):
        source = f"docker://{plain_registry.host}/{unique_repo}:{tag}"
        result = await run_cli("copy", source, f"oci:{layout}:{tag}", "--no-progress")
        assert result.code == 0, result.output
    # No tag names `latest`, which is not there: the error lists what is.
    result = await run_cli("copy", f"oci:{layout}", f"oci:{tmp_path}/out", "--no-progress")
    assert result.code == 1
    assert result.stderr.strip().splitlines()[-1].endswith("; tags there: 2.0, 1.0")
    result = await run_cli("copy", f"{plain_registry.host}/{unique_repo}:3.0", f"oci:{tmp_path}/out")
    assert result.code == 1
    assert result.stderr.strip().splitlines()[-1].endswith("; tags there: 2.0, 1.0")


def test_global_flags_after_the_subcommand(tmp_path: Path) -> None:
    plan = entry_plan(tmp_path / "p.yaml", "127.0.0.1:9", "127.0.0.1:7", "a", "[x]", name="only")
    proc = subprocess.run(
        [sys.executable, "-m", "mirrord", "check", "-c", str(plan), "-v", "--log-format", "text"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "name: only" in proc.stdout


BUG = """
import sys
import mirrord.cli as cli

async def broken(args):
    raise RuntimeError("a genuine bug")

cli._sync = broken
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_bug_is_labelled_and_not_chained_to_uvloop(tmp_path: Path) -> None:
    plan = entry_plan(tmp_path / "p.yaml", "127.0.0.1:9", "127.0.0.1:7", "a", "[x]", name="only")
    proc = subprocess.run(
        [sys.executable, "-c", BUG, "sync", "-c", str(plan)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == "mirrord: internal error, please report: RuntimeError: a genuine bug"
    assert lines[1] == "Traceback (most recent call last):"
    assert "uvloop" not in proc.stderr
    assert "During handling of the above exception" not in proc.stderr
