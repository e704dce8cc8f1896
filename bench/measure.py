"""Measuring a child process (wall, CPU, peak RSS) and counting registry requests from access logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# 127.0.0.1 - - [22/Nov/2026:07:21:32 +0000] "POST /v2/a/b/blobs/uploads/ HTTP/1.1" 202 0 "" "curl/7.88.1"
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<size>\d+|-)')
_KINDS = (
    (re.compile(r"^/v2/?$"), "ping"),
    (re.compile(r"^/v2/_catalog"), "catalog"),
    (re.compile(r"/blobs/uploads/"), "upload"),
    (re.compile(r"/blobs/[^/]+$"), "blob"),
    (re.compile(r"/manifests/[^/]+$"), "manifest"),
    (re.compile(r"/tags/list$"), "tags"),
    (re.compile(r"/referrers/"), "referrers"),
)


def request_kind(path: str) -> str:
    """What a ``/v2/...`` path addresses: ping, catalog, upload, blob, manifest, tags, referrers, other."""
    path = path.split("?", 1)[0]
    for pattern, kind in _KINDS:
        if pattern.search(path):
            return kind
    return "other"


@dataclass
class RequestStats:
    """Requests one registry answered in one phase.

    ``counts`` maps ``"METHOD kind"`` (e.g. ``"GET blob"``) to a count; ``errors`` counts answers >= 400
    per the same key; ``blob_bytes_sent`` / ``manifest_bytes_sent`` are response body bytes of GETs.
    """

    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    blob_bytes_sent: int = 0
    manifest_bytes_sent: int = 0

    @property
    def total(self) -> int:
        """All requests."""
        return sum(self.counts.values())

    def get(self, key: str) -> int:
        """The count for ``"METHOD kind"``, 0 if none."""
        return self.counts.get(key, 0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "total": self.total,
            "counts": dict(sorted(self.counts.items())),
            "errors": dict(sorted(self.errors.items())),
            "blob_bytes_sent": self.blob_bytes_sent,
            "manifest_bytes_sent": self.manifest_bytes_sent,
        }


def parse_access_log(lines: Iterable[str]) -> RequestStats:
    """Count the combined-format access-log ``lines`` of a docker-registry (other lines are ignored)."""
    stats = RequestStats()
    for line in lines:
        m = _ACCESS.search(line)
        if m is None:
            continue
        key = f"{m['method']} {request_kind(m['path'])}"
        stats.counts[key] += 1
        if int(m["status"]) >= 400:
            stats.errors[key] += 1
        if m["method"] == "GET" and m["size"] != "-" and int(m["status"]) < 300:
            if key == "GET blob":
                stats.blob_bytes_sent += int(m["size"])
            elif key == "GET manifest":
                stats.manifest_bytes_sent += int(m["size"])
    return stats


@dataclass(frozen=True)
class ProcessResult:
    """How a child process ran: exit code, wall and CPU seconds (user+sys), peak RSS in bytes."""

    argv: tuple[str, ...]
    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss: int
    log: Path

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "argv": list(self.argv),
            "exit_code": self.exit_code,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss": self.peak_rss,
            "log": str(self.log),
        }


def run_measured(
    argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None, timeout: float = 3600
) -> ProcessResult:
    """Run ``argv`` to completion with stdout+stderr to ``log`` and measure it.

    CPU time (user + sys, including descendants it waited for) comes from ``os.wait4``. Peak RSS is the
    child's ``VmHWM`` sampled every 10 ms: ``ru_maxrss`` cannot be used, because Linux carries the
    forking parent's high-water mark across ``exec`` into the child's (this harness holds ~45 MB, which
    would floor every tool's figure). ``VmHWM`` is monotonic, so sampling misses at most a peak reached
    in the child's last 10 ms. The child gets its own session; if we are interrupted (Ctrl-C) or it
    outlives ``timeout``, its whole process group is killed before the exception propagates.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env else None,
            start_new_session=True,
        )
    try:
        status, usage, peak = _wait4(proc.pid, start + timeout)
    except BaseException:
        _kill_group(proc)
        raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcessResult(
        argv=tuple(argv),
        exit_code=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss=peak,
        log=log,
    )


def _wait4(pid: int, deadline: float) -> tuple[int, Any, int]:
    peak = 0
    while True:
        peak = max(peak, vm_hwm(pid))
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, peak
        if time.perf_counter() > deadline:
            raise TimeoutError(f"child {pid} timed out")
        time.sleep(0.01)


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent not idle since boot (``/proc/stat``); compare two readings."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def vm_hwm(pid: int) -> int:
    """Peak resident set size in bytes of live process ``pid`` (``VmHWM``); 0 if unreadable or exited."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait()
