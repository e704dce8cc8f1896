"""sd_notify over a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrord.daemon.systemd import Notifier, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket (like systemd's) and its path."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_reach_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert receive(sock) == "READY=1"
    assert notifier.stopping()
    assert receive(sock) == "STOPPING=1"
    assert notifier.watchdog()
    assert receive(sock) == "WATCHDOG=1"
    assert notifier.status("mirroring 3 entries")
    assert receive(sock) == "STATUS=mirroring 3 entries"
    assert notifier.ready(status="serving")
    assert receive(sock) == "READY=1\nSTATUS=serving"


def test_reloading_carries_the_monotonic_time(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier({"NOTIFY_SOCKET": path}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic = receive(sock).split("\n")
    assert reloading == "RELOADING=1"
    key, usec = monotonic.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after


def test_status_cannot_inject_assignments(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    Notifier({"NOTIFY_SOCKET": path}).status("fine\nREADY=1\r\nSTOPPING=1")
    assert receive(sock) == "STATUS=fine READY=1 STOPPING=1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract unix sockets are Linux-only")
def test_abstract_namespace() -> None:
    name = f"mirrord-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert receive(sock) == "READY=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.reloading()
    assert not notifier.stopping()
    assert not notifier.watchdog()
    assert not notifier.status("x")


def test_reads_the_process_environment(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier().ready()
    assert receive(sock) == "READY=1"


def test_unsupported_address_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert "not a unix socket address" in caplog.text


def test_a_vanished_supervisor_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()
    assert "systemd notification failed" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.25),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": ""}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 1.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
