"""The daemon's composition root: plan, registries, engine passes, scheduler, HTTP, signals, systemd.

``Service.run`` returns the process exit status: 0 after a clean shutdown, 2 when the plan is invalid
at start. SIGHUP reloads the plan (a bad plan is logged and the old one keeps running); SIGTERM and
SIGINT stop starting new work, give copies in flight ``grace`` seconds, cancel the rest, and return 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirrord import __version__
from mirrord.core.events import EventBus
from mirrord.daemon.notify import NotificationDispatcher, PushEvent, run_notified
from mirrord.daemon.passes import Reason, ReloadState, iso, log_pass_finished, log_pass_started
from mirrord.daemon.scheduler import Scheduler
from mirrord.daemon.systemd import Notifier, watchdog_interval
from mirrord.daemon.web import Triggered, make_app, start_server
from mirrord.observe.logs import event_logger
from mirrord.observe.metrics import Metrics
from mirrord.plan import Entry, Plan, PlanError, load_plan
from mirrord.registry.hub import Registries
from mirrord.sync import EntryReport, SyncRunner, open_location_cache, shard_entries
from mirrord.sync.state import conversions_beside
from mirrord.sync.trust import Trust, open_trust

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EntryStatus:
    """What ``/status`` says about one entry."""

    interval: float
    last_start: float | None = None
    last_end: float | None = None
    last_success: float | None = None
    result: str | None = None
    copied: int = 0
    unchanged: int = 0
    failed: int = 0
    rejected: int = 0
    bytes: int = 0
    last_error: str | None = None
    runs: int = 0
    repositories: int | None = None  # a pattern entry: repositories its last pass covered
    extra: dict[str, Any] = field(default_factory=dict)


class Service:
    """The long-running daemon. Construct, then ``await run()``."""

    def __init__(
        self,
        plan_path: str | Path,
        *,
        shard: tuple[int, int] | None = None,
        grace: float = 30.0,
        listen: tuple[str, int] | None = None,
        state_dir: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.plan_path = str(plan_path)
        self.shard = shard
        self.grace = grace
        self.listen = listen
        self.locations = open_location_cache(state_dir)
        # Read once, like the locations: every runner (start, each reload) shares this map, so a
        # SIGHUP neither re-reads conversions.json nor forgets the in-memory conversions.
        self.conversions = conversions_beside(self.locations)
        self.events = EventBus()
        self.metrics = Metrics()
        self.metrics.subscribe(self.events)
        self.events.subscribe(event_logger(verbose=verbose))
        self.notifier = Notifier()
        self.started = time.time()
        self.plan: Plan | None = None
        self.port: int | None = None
        self._entries: dict[str, Entry] = {}
        self._status: dict[str, EntryStatus] = {}
        self._runner: SyncRunner | None = None
        self._trust = Trust()
        self._registries: Registries | None = None
        self._stopping = asyncio.Event()
        self._ready = False
        self.reload_state = ReloadState()
        self._reasons: dict[str, Reason] = {}  # why an entry's next pass runs, when not its schedule
        self.scheduler = Scheduler(self._run_entry)
        self.notifications = NotificationDispatcher(
            lambda: self._entries.values(), self._notified, shard=shard
        )

    # -- ServiceState for the web app ---------------------------------------------------------------

    def is_ready(self) -> bool:
        """Loaded and serving, the last reload accepted, and no entry's last success older than 3
        intervals."""
        if not self._ready or self._stopping.is_set() or not self.reload_state.ok:
            return False
        now = time.time()
        for st in self._status.values():
            since = st.last_success or self.started
            if now - since > 3 * st.interval:
                return False
        return True

    def status(self) -> dict[str, Any]:
        """The ``/status`` body: per entry timing, result, counts, next run, last error."""
        entries = {}
        for name, st in self._status.items():
            next_run = self.scheduler.next_run(name)
            next_at = None if next_run is None else time.time() + max(0.0, next_run - time.monotonic())
            times = {"last_start": st.last_start, "last_end": st.last_end, "last_success": st.last_success}
            entries[name] = {
                **{key: iso(value) for key, value in times.items()},
                "result": st.result,
                "running": self.scheduler.running(name),
                "images": {
                    "copied": st.copied,
                    "unchanged": st.unchanged,
                    "failed": st.failed,
                    "rejected": st.rejected,
                },
                "bytes": st.bytes,
                "next_run": iso(next_at),
                "last_error": st.last_error,
                "interval": st.interval,
                "runs": st.runs,
                # The same times as Unix seconds, as /status gave them before ISO 8601.
                **{f"{key}_unix": value for key, value in {**times, "next_run": next_at}.items()},
                "repositories": st.repositories,
            }
        return {
            "version": __version__,
            "plan": self.plan_path,
            "ready": self.is_ready(),
            "started": iso(self.started),
            "config": self.reload_state.to_json(),
            "entries": entries,
        }

    def trigger(self, entry: str | None, reason: Reason = "trigger") -> Triggered | None:
        """Start a pass now (one entry or all) and say which started and which were queued behind a
        run in flight; None for an unknown entry. ``reason`` goes into the pass's log lines."""
        if entry is not None and entry not in self._entries:
            return None
        names = [entry] if entry is not None else list(self._entries)
        running = {n for n in names if self.scheduler.running(n)}
        if not self.scheduler.trigger(entry):
            return None
        for name in names:
            self._reasons[name] = reason
        started = tuple(n for n in names if n not in running)
        return Triggered(started=started, queued=tuple(n for n in names if n in running))

    def notify(self, pushes: list[PushEvent]) -> tuple[int, int]:
        """Queue a sync of what ``pushes`` name (POST /notify); (accepted, ignored) event counts."""
        return self.notifications.submit(pushes)

    async def _notified(self, entry: Entry) -> None:
        """One notification sync: ``entry`` is narrowed to a repository and the pushed tags."""
        if self._runner is not None:
            await run_notified(self._runner, entry)

    # -- running ------------------------------------------------------------------------------------

    def _load(self) -> Plan:
        # All or nothing: load_plan validates the whole plan and the scheduler checks the intervals
        # before either changes anything; nothing after the scheduler can raise (metrics never veto a
        # plan), so the service and the scheduler always run the same entries.
        plan = load_plan(self.plan_path)
        trust = open_trust(plan)  # the policy and signing keys, read once per load (PlanError)
        entries = shard_entries(plan.entries, self.shard)
        self.scheduler.set_entries({e.name: e.interval for e in entries})
        self._trust = trust
        self._entries = {e.name: e for e in entries}
        for name in list(self._status):
            if name not in self._entries:
                del self._status[name]
        for e in entries:
            self._status.setdefault(e.name, EntryStatus(interval=e.interval)).interval = e.interval
        try:
            self.metrics.declare_entries(list(self._entries))
        except Exception:
            log.exception("metrics could not follow the plan; the plan is applied")
        return plan

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit status."""
        try:
            self.plan = self._load()
        except PlanError as exc:
            log.error("invalid plan", extra={"fields": {"error": str(exc)}})
            return 2
        self._reloaded(True)
        async with Registries(self.plan.registries, events=self.events) as registries:
            self._registries = registries
            self._runner = self._new_runner(self.plan, registries)
            runner, self.port = await self._start_http(self.plan)
            try:
                self._install_signals()
                self._ready = True
                self.notifier.ready()
                log.info(
                    "mirrord running", extra={"fields": {"port": self.port, "entries": len(self._entries)}}
                )
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.scheduler.run())
                    group.create_task(self.notifications.run())
                    group.create_task(self._watchdog())
                    group.create_task(self._stop_on_signal())
            finally:
                await runner.cleanup()
        log.info("mirrord stopped")
        return 0

    def _new_runner(self, plan: Plan, registries: Registries) -> SyncRunner:
        """The runner of ``plan`` (at start and after each accepted reload): the service's events,
        location cache, shard, and the trust :meth:`_load` opened with the plan."""
        return SyncRunner(
            plan,
            registries,
            events=self.events,
            locations=self.locations,
            conversions=self.conversions,
            trust=self._trust,
            shard=self.shard,
        )

    async def _start_http(self, plan: Plan) -> tuple[Any, int]:
        host, port = self.listen or (plan.server.host, plan.server.port)
        app = make_app(self, self.metrics, trigger_token=self._trigger_token)
        return await start_server(app, host, port)

    def _trigger_token(self) -> str | None:
        token_file = self.plan.server.trigger_token_file if self.plan else None
        if not token_file:
            return None
        return Path(token_file).read_text().strip() or None

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)

    async def _stop_on_signal(self) -> None:
        await self._stopping.wait()
        log.info("stopping", extra={"fields": {"grace": self.grace}})
        self._ready = False
        self.notifier.stopping()
        self.scheduler.stop()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.scheduler.drain(self.grace))
            group.create_task(self.notifications.drain(self.grace))

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            await self._stopping.wait()
            return
        while not self._stopping.is_set():
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    def reload(self) -> None:
        """SIGHUP: load the plan again; keep the old one when the new one is invalid."""
        self.notifier.reloading()
        try:
            plan = self._load()
        except PlanError as exc:
            log.error("reload rejected, keeping the running plan", extra={"fields": {"error": str(exc)}})
            self._reloaded(False, str(exc))
        else:
            self._reloaded(True)
            self.plan = plan
            if self._registries is not None:
                self._registries.update_settings(plan.registries)
                runner = self._new_runner(plan, self._registries)
                if self._runner is not None:
                    runner.carry_over(self._runner)
                self._runner = runner
            log.info("plan reloaded", extra={"fields": {"entries": len(self._entries)}})
        self.notifier.ready()

    def _reloaded(self, ok: bool, error: str | None = None) -> None:
        now = time.time()
        self.reload_state.record(ok, now, error)
        self.metrics.config_reloaded(ok, now)

    async def _run_entry(self, name: str) -> bool:
        entry = self._entries.get(name)
        if entry is None or self._runner is None:
            return True
        st = self._status[name]
        reason = self._reasons.pop(name, "start" if st.runs == 0 else "schedule")
        st.last_start, st.runs = time.time(), st.runs + 1
        log_pass_started(name, reason)
        report = await self._runner.run_entry(entry, self._runner.new_engine())
        log_pass_finished(name, reason, report)
        self._record(st, report)
        self.metrics.sync_run_finished(name, report.ok, report.finished - report.started, report.finished)
        return report.ok

    def _record(self, st: EntryStatus, report: EntryReport) -> None:
        st.last_end = report.finished
        st.result = "success" if report.ok else "failure"
        if report.ok:
            st.last_success = report.finished
        st.copied = report.count("copied")
        st.unchanged = report.count("unchanged")
        st.failed = report.count("failed")
        st.rejected = report.count("rejected")
        st.bytes = report.total_bytes
        st.last_error = report.first_error
        if report.repositories is not None:
            st.repositories = len(report.repositories)
            self.metrics.entry_repositories(report.entry, len(report.repositories))
