"""SIGINT and SIGTERM during a one-shot ``mirrord sync``: stop the pass cleanly, once.

The first signal calls :meth:`SyncRunner.interrupt` (nothing new starts, no prune runs, copies in
flight are cancelled and their upload sessions cancelled at the registry) and the pass returns its
reports, so the caller can write the report and exit 130. The handler is then removed, so a second
signal acts as usual (KeyboardInterrupt for SIGINT, termination for SIGTERM): an operator can
always force the exit. The daemon has its own handling (``mirrord.daemon.service``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from types import TracebackType

from mirrord.copy.engine import INTERRUPTED
from mirrord.sync.report import EntryReport
from mirrord.sync.runner import SyncRunner

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The exit status of a sync stopped by a signal (128 + SIGINT, what shells report for Ctrl-C).
EXIT_INTERRUPTED = 130


class StopOnSignal:
    """``with StopOnSignal(runner) as stop:`` around a pass; afterwards ``stop.signal`` names the
    signal that interrupted it (``"SIGINT"``), or is None. Enter it with the event loop running."""

    def __init__(self, runner: SyncRunner) -> None:
        self.runner = runner
        self.signal: str | None = None
        self._installed: list[signal.Signals] = []

    def __enter__(self) -> StopOnSignal:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a platform without it: signals act as usual
            self._installed.append(sig)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._remove()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.signal is None:
            self.signal = sig.name
        self._remove()
        self.runner.interrupt()

    def _remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        self._installed.clear()


def interrupted_line(signal_name: str, reports: Sequence[EntryReport], report_path: str | None) -> str:
    """The one line a sync stopped by ``signal_name`` prints on stderr."""
    images = [i for r in reports for i in r.images]
    cut = sum(1 for i in images if i.error == INTERRUPTED) + sum(1 for r in reports if r.error == INTERRUPTED)
    done = sum(1 for i in images if i.error != INTERRUPTED)
    where = f"; report written to {report_path}" if report_path else ""
    return (
        f"interrupted by {signal_name}: {done} image(s) finished, {cut} cut short or not started, "
        f"no prune, open uploads cancelled{where}"
    )
