"""Throwaway Debian ``docker-registry`` processes on 127.0.0.1 with access logs we can count.

The registry writes one combined-format access-log line per request on stdout; we send that to a file
and remember byte offsets so each measured phase reads only its own lines (:meth:`Registry.mark`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.measure import RequestStats, parse_access_log

REGISTRY_BIN = "docker-registry"
START_TIMEOUT = 15.0


class BenchError(Exception):
    """A benchmark prerequisite or step failed (missing tool, registry did not start, ...)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config_text(port: int, storage: Path) -> str:
    # log level warn: the per-request "response completed" JSON lines at info would only add registry
    # CPU; the access log (stdout) is independent of the level and has what we count.
    return (
        "version: 0.1\n"
        "log: {level: warn, formatter: json}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: mirrord-bench}}\n"
    )


@dataclass
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``storage`` its filesystem root."""

    host: str
    storage: Path
    access_log: Path
    proc: subprocess.Popen[bytes]

    def mark(self) -> int:
        """The access log's current length: pass it to :meth:`requests_since` after a phase."""
        # The registry logs a request after answering it; a short pause lets the last lines land.
        time.sleep(0.2)
        return self.access_log.stat().st_size

    def requests_since(self, offset: int) -> RequestStats:
        """Requests logged after ``offset`` (from :meth:`mark`)."""
        time.sleep(0.2)
        with self.access_log.open("rb") as f:
            f.seek(offset)
            return parse_access_log(f.read().decode(errors="replace").splitlines())

    def cpu_seconds(self) -> float:
        """CPU time (user + sys) the registry process has used so far; compare two readings."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stored_blob_bytes(self) -> int:
        """Bytes of blob data held in storage (each distinct blob once, as the registry stores it)."""
        root = self.storage / "docker" / "registry" / "v2" / "blobs"
        return sum(p.stat().st_size for p in root.rglob("data")) if root.exists() else 0

    def stop(self) -> None:
        """Terminate the process (and kill it if it does not stop in 10 s)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _wait_ready(host: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"docker-registry on {host} did not start (see {log})") from None
            time.sleep(0.05)


def require_tool(name: str) -> str:
    """The path of executable ``name``; :class:`BenchError` naming the Debian package if missing."""
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} is not installed (run `make deps`)")
    return path


@contextlib.contextmanager
def registry(workdir: Path, storage: Path | None = None, *, keep: bool = False) -> Iterator[Registry]:
    """Run a registry with its config and logs in ``workdir`` and storage in ``storage``.

    ``storage`` defaults to ``workdir/storage``. The process is stopped on exit; ``workdir`` is deleted
    too unless ``keep`` (a seeded source kept for the next run keeps its storage elsewhere).
    """
    require_tool(REGISTRY_BIN)
    workdir.mkdir(parents=True, exist_ok=True)
    storage = storage or workdir / "storage"
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(_config_text(port, storage))
    host = f"127.0.0.1:{port}"
    access_log = workdir / "access.log"
    with open(access_log, "wb") as out, open(workdir / "registry.log", "wb") as err:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=out, stderr=err, start_new_session=True
        )
    reg = Registry(host=host, storage=storage, access_log=access_log, proc=proc)
    try:
        _wait_ready(host, proc, workdir / "registry.log")
        yield reg
    finally:
        reg.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
