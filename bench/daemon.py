"""Nothing-changed passes inside a running ``mirrord run``.

A one-shot ``mirrord sync`` pays interpreter start-up and imports (about a third of a second here) on
every run; the daemon pays them once. :class:`Daemon` starts ``mirrord run`` with an HTTP listener,
waits for its first pass, then :meth:`Daemon.run_pass` triggers one pass of every entry with
``POST /sync`` and polls ``GET /status`` (every few milliseconds) until each entry's run count went up
and none is running: the wall time of that, and the daemon's CPU time over it (``/proc/PID/stat``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.measure import vm_hwm

POLL_S = 0.005
READY_TIMEOUT_S = 900.0
PASS_TIMEOUT_S = 300.0


class DaemonError(Exception):
    """The daemon exited, or a pass did not finish in time."""


class Daemon:
    """``mirrord run`` as a child process listening on ``127.0.0.1:port``; stopped (SIGTERM, then
    SIGKILL after 10 s) when the ``with`` block ends."""

    def __init__(self, argv: Sequence[str], port: int, log: Path, env: Mapping[str, str]) -> None:
        self.argv = tuple(argv)
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self.env = dict(env)
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self._proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        try:
            self._wait(lambda entries: all(e["runs"] >= 1 for e in entries.values()), READY_TIMEOUT_S)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self._proc is not None, "use inside `with Daemon(...)`"
        return self._proc.pid

    def entries(self) -> dict[str, Any]:
        """``GET /status``'s per-entry part."""
        with urllib.request.urlopen(f"{self.base}/status", timeout=10) as answer:
            entries: dict[str, Any] = json.load(answer)["entries"]
        return entries

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the daemon has used so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> int:
        """The daemon's peak resident set size in bytes so far."""
        return vm_hwm(self.pid)

    def rss(self) -> int:
        """The daemon's resident set size in bytes now (``VmRSS``): flat across passes, or it leaks."""
        with open(f"/proc/{self.pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def run_pass(self) -> tuple[float, bool]:
        """Trigger a pass of every entry and wait for it: (wall seconds, every entry succeeded)."""
        before = {name: e["runs"] for name, e in self.entries().items()}
        start = time.perf_counter()
        request = urllib.request.Request(f"{self.base}/sync", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
        done = self._wait(
            lambda entries: all(e["runs"] > before[n] for n, e in entries.items()), PASS_TIMEOUT_S
        )
        wall = time.perf_counter() - start
        return wall, all(e["result"] == "success" for e in done.values())

    def _wait(self, finished: Any, timeout: float) -> dict[str, Any]:
        """Poll /status until ``finished(entries)`` holds and no entry is running."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DaemonError(f"mirrord run exited {self._proc.returncode}; see {self.log}")
            try:
                entries = self.entries()
            except OSError:
                entries = {}  # not listening yet
            if entries and finished(entries) and not any(e["running"] for e in entries.values()):
                return entries
            time.sleep(POLL_S)
        raise DaemonError(f"mirrord run: no finished pass within {timeout:.0f} s; see {self.log}")

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
