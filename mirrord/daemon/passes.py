"""What the daemon says about itself: pass start/end log lines, the plan's reload state, ISO times.

Kept apart from :mod:`mirrord.daemon.service` so the composition root only calls in here.
A pass's ``reason`` is one word: ``start`` (an entry's first run), ``schedule`` (its interval came
round), ``trigger`` (``POST /sync``) or ``notification`` (a registry's push, ``POST /notify``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from mirrord.observe.logs import iso_utc
from mirrord.sync import EntryReport

log = logging.getLogger("mirrord.daemon")

Reason = Literal["start", "schedule", "trigger", "notification"]


def iso(ts: float | None) -> str | None:
    """Unix time as ISO 8601 UTC with milliseconds (``2026-12-02T06:30:00.250Z``); None stays None."""
    return None if ts is None else iso_utc(ts)


@dataclass(slots=True)
class ReloadState:
    """The outcome of the last plan load (at start) or SIGHUP reload."""

    ok: bool = True
    at: float | None = None
    error: str | None = None
    loaded: float | None = None  # when the plan now running was loaded

    def record(self, ok: bool, at: float, error: str | None = None) -> None:
        """Note one load attempt; a success also dates the running plan."""
        self.ok, self.at, self.error = ok, at, error
        if ok:
            self.loaded = at

    def to_json(self) -> dict[str, Any]:
        """The ``config`` part of ``/status``. ``error`` is a PlanError message, which holds no secret."""
        return {
            "reload_ok": self.ok,
            "last_reload": iso(self.at),
            "last_reload_error": self.error,
            "loaded": iso(self.loaded),
        }


def log_pass_started(entry: str, reason: Reason) -> None:
    """One line when a pass over ``entry`` begins."""
    log.info("pass started", extra={"fields": {"entry": entry, "reason": reason}})


def log_pass_finished(entry: str, reason: Reason, report: EntryReport) -> None:
    """One line when it ends: result, counts, bytes, seconds and the first error (warning on failure)."""
    fields: dict[str, Any] = {
        "entry": entry,
        "reason": reason,
        "result": "success" if report.ok else "failure",
        "copied": report.count("copied"),
        "unchanged": report.count("unchanged"),
        "failed": report.count("failed"),
        "bytes": report.total_bytes,
        "seconds": round(max(0.0, report.finished - report.started), 3),
    }
    if (error := report.first_error) is not None:
        fields["error"] = error
    log.log(logging.INFO if report.ok else logging.WARNING, "pass finished", extra={"fields": fields})
