"""systemd's notify protocol (``sd_notify``) without libsystemd.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket (a path, or an abstract
name written with a leading ``@``), and waits for ``READY=1``. With ``WatchdogSec=`` it also passes
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) and expects ``WATCHDOG=1`` more often than that.

Outside systemd every call is a no-op. A message that cannot be delivered is logged and dropped: the
daemon must never fail because its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# sd_notify blocks too; a bound keeps a wedged supervisor from wedging the event loop for long.
_SEND_TIMEOUT = 1.0


def _address(value: str | None) -> str | None:
    """The socket address for ``$NOTIFY_SOCKET``: a path, or ``\\0name`` for ``@name``; None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # e.g. vsock:CID:PORT, which systemd uses for VMs; not something a mirroring daemon runs under.
    log.warning("NOTIFY_SOCKET %r is not a unix socket address; systemd notifications are off", value)
    return None


def _one_line(text: str) -> str:
    """``text`` with line breaks flattened, so it cannot smuggle extra ``KEY=value`` assignments."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends state changes to systemd; a no-op when ``NOTIFY_SOCKET`` is unset.

    ``environ`` defaults to ``os.environ`` (read once, at construction).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """True when running under systemd's notify protocol."""
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup (or a reload) is complete and the service is serving."""
        return self._send("READY=1", status)

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (as ``Type=notify-reload`` requires); follow with
        :meth:`ready` when the reload is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}", status)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self._send("STOPPING=1", status)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the event loop is alive."""
        return self._send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=text``: a one-line human-readable state shown by ``systemctl status``."""
        return self._send(None, text)

    def _send(self, state: str | None, status: str | None = None) -> bool:
        """Send one datagram; True when delivered, False when disabled or the send failed."""
        if self._address is None:
            return False
        lines = [state] if state else []
        if status is not None:
            lines.append(f"STATUS={_one_line(status)}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SEND_TIMEOUT)
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            log.warning("systemd notification failed: %s", exc)
            return False
        return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled advises.

    None when the watchdog is off: ``WATCHDOG_USEC`` unset, not a positive integer, or ``WATCHDOG_PID``
    set to another process (the variables were inherited, not meant for us).
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec / 2 / 1_000_000
