"""`mirrord sync` on a terminal (a pseudo-terminal, 120 columns) between two real registries: the bars
end with every row in its own unit, and the summary still goes to stdout."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, entry_plan, images, seed, tags_at
from tests.observe.terminal import screen
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration


def run_on_terminal(args: list[str], columns: int = 120, rows: int = 30) -> tuple[int, str, str]:
    """Run ``python -m mirrord ARGS`` with stderr on a pseudo-terminal; (status, stdout, terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = cli_env({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirrord", *args], stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:  # read as it comes, so the child never blocks on a full terminal buffer
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(60), out, b"".join(chunks).decode(errors="replace")


async def test_progress_bars_on_a_terminal(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0", "2.0", "3.0"))
    plan = entry_plan(
        tmp_path / "p.yaml", plain_registry.host, target.host, unique_repo, "[1.0, 2.0, 3.0]", name="e"
    )
    code, out, terminal = await asyncio.to_thread(run_on_terminal, ["sync", "-c", str(plan)])
    assert code == 0, terminal
    assert out.splitlines()[-1] == "3 copied"
    lines = screen(terminal)
    rows = {line.split()[0]: line for line in lines if line.split()[0] in ("images", "blobs", "bytes")}
    assert set(rows) == {"images", "blobs", "bytes"}, lines
    assert rows["images"].split()[-1] == "3/3"
    done, total = rows["blobs"].split()[-1].split("/")
    assert done == total != "0"
    words = rows["bytes"].split()
    # One human size pair in one unit, one human rate, the elapsed time; no raw byte counts.
    amount, unit, rate, rate_unit, elapsed = words[-5:]
    done_bytes, total_bytes = amount.split("/")
    assert done_bytes == total_bytes
    assert unit in ("B", "kB", "MB")
    assert float(rate) > 0
    assert rate_unit in ("B/s", "kB/s", "MB/s", "GB/s")
    assert elapsed.count(":") == 2
    assert "bytes" not in " ".join(words[1:])
    assert await tags_at(target.host, unique_repo) == ["1.0", "2.0", "3.0"]
