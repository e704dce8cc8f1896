"""The daemon's own reporting: ISO times, the reload state, one log line per pass start and end."""

from __future__ import annotations

import logging

import pytest

from mirrord.daemon.passes import ReloadState, iso, log_pass_finished, log_pass_started
from mirrord.sync import EntryReport
from mirrord.sync.report import ImageReport


def test_iso_times_are_utc_with_milliseconds() -> None:
    assert iso(None) is None
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_764_657_000.25) == "2025-12-02T06:30:00.250Z"


def test_reload_state_keeps_the_running_plan_date_across_a_rejected_reload() -> None:
    state = ReloadState()
    state.record(True, 100.0)
    state.record(False, 200.0, "plan.yaml:3: sync: bad")
    assert state.to_json() == {
        "reload_ok": False,
        "last_reload": iso(200.0),
        "last_reload_error": "plan.yaml:3: sync: bad",
        "loaded": iso(100.0),
    }
    state.record(True, 300.0)
    assert state.to_json()["reload_ok"] is True
    assert state.to_json()["last_reload_error"] is None


def test_one_line_per_pass_start_and_end_with_reason_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mirrord.daemon")
    report = EntryReport(entry="web", started=10.0, finished=12.5)
    report.images = [
        ImageReport(entry="web", source="src/web:1", result="copied", bytes=300),
        ImageReport(entry="web", source="src/web:2", result="unchanged"),
        ImageReport(entry="web", source="src/web:3", result="failed", error="boom"),
    ]
    log_pass_started("web", "notification")
    log_pass_finished("web", "notification", report)
    started, finished = caplog.records
    assert (started.getMessage(), started.levelno) == ("pass started", logging.INFO)
    assert started.fields == {"entry": "web", "reason": "notification"}  # type: ignore[attr-defined]
    assert (finished.getMessage(), finished.levelno) == ("pass finished", logging.WARNING)
    assert finished.fields == {  # type: ignore[attr-defined]
        "entry": "web",
        "reason": "notification",
        "result": "failure",
        "copied": 1,
        "unchanged": 1,
        "failed": 1,
        "bytes": 300,
        "seconds": 2.5,
        "error": "boom",
    }
