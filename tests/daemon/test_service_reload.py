"""A reload applies whole: the service's entries, ``/status``, metrics and the scheduler move together."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from mirrord.daemon.service import Service


def _write(path: Path, *names: str) -> Path:
    entries = "".join(
        f"  - name: {n}\n    source: src.example/{n}\n    target: dst.example/{n}\n    interval: 1h\n"
        for n in names
    )
    path.write_text(f"version: 1\nsync:\n{entries}")
    return path


def _remove_as_before_0_22(self: MetricWrapperBase, *labelvalues: Any) -> None:
    """``remove`` as prometheus-client < 0.22 wrote it: KeyError for a series never created."""
    with self._lock:
        del self._metrics[tuple(str(v) for v in labelvalues)]


def _agree(service: Service, names: set[str]) -> None:
    """The service runs exactly ``names`` and the scheduler schedules exactly those."""
    assert service.plan is not None
    assert {e.name for e in service.plan.entries} == names
    assert set(service.status()["entries"]) == names
    for name in names:
        assert service.scheduler.next_run(name) is not None, name
    for gone in {"a", "b", "c"} - names:
        assert service.scheduler.next_run(gone) is None, gone
        assert not service.trigger(gone)


async def test_a_reload_dropping_a_never_run_entry_works_with_older_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MetricWrapperBase, "remove", _remove_as_before_0_22)
    plan = _write(tmp_path / "plan.yaml", "a", "b")
    service = Service(plan)
    service.reload()  # the first load, as at start
    _agree(service, {"a", "b"})

    _write(plan, "a", "c")
    service.reload()  # SIGHUP: "b" never ran, so it has no last-success series to remove
    _agree(service, {"a", "c"})
    assert b'entry="b"' not in service.metrics.render()


async def test_metrics_that_cannot_follow_never_split_service_and_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plan = _write(tmp_path / "plan.yaml", "a", "b")
    service = Service(plan)
    service.reload()

    def refuse(names: object) -> None:
        raise RuntimeError("metrics are broken")

    monkeypatch.setattr(service.metrics, "declare_entries", refuse)
    _write(plan, "a", "c")
    with caplog.at_level(logging.ERROR, logger="mirrord.daemon.service"):
        service.reload()
    _agree(service, {"a", "c"})
    assert any(r.exc_info for r in caplog.records if "metrics could not follow" in r.getMessage())


async def test_an_invalid_plan_changes_nothing(tmp_path: Path) -> None:
    plan = _write(tmp_path / "plan.yaml", "a", "b")
    service = Service(plan)
    service.reload()
    plan.write_text("version: 1\nsync:\n  - source: [unclosed\n")
    service.reload()
    _agree(service, {"a", "b"})
