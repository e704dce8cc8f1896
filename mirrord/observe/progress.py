"""Progress bars for one-shot commands on a terminal: images, blobs and bytes, each in its own unit.

A subscriber of the engine's events. Totals grow as work is discovered, so each row shows done/known:

- ``images``: a count; images that failed are counted apart (``1 failed``), never as done;
- ``blobs``: a count of blob transfers; a transfer that failed or was cancelled is not done (it leaves
  the total, and a retry adds it again); retries and failures are shown beside the row;
- ``bytes``: one human size (``85.3/256.0 MB``) and one human rate, the average since the first byte
  (a figure that stays true at the end, unlike a rate frozen when the known total was first reached).

Log records are printed above the bars while they are shown, never into the bar line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from mirrord.core import events as ev

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_bytes(count: float, unit_of: float | None = None) -> tuple[str, str]:
    """``count`` in the decimal unit that suits ``unit_of`` (default: ``count``): ("85.3", "MB")."""
    scale_of = max(unit_of if unit_of is not None else count, 0)
    power = 0
    while scale_of >= 1000 and power < len(_UNITS) - 1:
        scale_of /= 1000
        power += 1
    value = count / 1000**power
    text = f"{value:.0f}" if power == 0 else f"{value:.1f}"
    return text, _UNITS[power]


def human_rate(per_second: float) -> str:
    """``28.4 MB/s``."""
    value, unit = human_bytes(per_second)
    return f"{value} {unit}/s"


@dataclass(slots=True)
class _Counts:
    """One counted row: done, known, failed and retried."""

    done: int = 0
    known: int = 0
    failed: int = 0
    retries: int = 0

    def note(self) -> str:
        parts = []
        if self.retries:
            parts.append(f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)


class _AmountColumn(ProgressColumn):
    """``3/8`` for counts, ``85.3/256.0 MB`` for bytes."""

    def render(self, task: Task) -> Text:
        done, total = int(task.completed), int(task.total or 0)
        if task.fields.get("unit") != "bytes":
            return Text(f"{done}/{total}", style="progress.download")
        value, unit = human_bytes(done, total)
        total_value, _ = human_bytes(total, total)
        return Text(f"{value}/{total_value} {unit}", style="progress.download")


class _FieldColumn(ProgressColumn):
    """A text field of the task (``rate``, ``note``), empty when unset."""

    def __init__(self, name: str, style: str) -> None:
        super().__init__()
        self.name, self.style = name, style

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get(self.name, "")), style=self.style)


class _ConsoleLogHandler(logging.Handler):
    """Prints each record through the progress console, so it lands above the live bars."""

    def __init__(self, console: Console, original: logging.Handler) -> None:
        super().__init__(original.level)
        self.console = console
        self.setFormatter(original.formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


class ProgressBars:
    """Context manager showing the three rows on stderr while a command runs.

    ``clock`` (seconds, monotonic) and ``auto_refresh`` are there for tests; :attr:`renderable` is
    what the bars show now.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        auto_refresh: bool = True,
    ) -> None:
        self._clock = clock
        self._progress = Progress(
            TextColumn("{task.description:>6}"),
            BarColumn(),
            _AmountColumn(),
            _FieldColumn("rate", "progress.data.speed"),
            _FieldColumn("elapsed", "progress.elapsed"),
            _FieldColumn("note", "bold red"),
            console=console or Console(stderr=True),
            transient=False,
            auto_refresh=auto_refresh,
            get_time=clock,
        )
        add = self._progress.add_task
        self._images = add("images", total=0, unit="count", note="", rate="", elapsed="")
        self._blobs = add("blobs", total=0, unit="count", note="", rate="", elapsed="")
        self._bytes = add("bytes", total=0, unit="bytes", note="", rate="", elapsed="")
        self._started = clock()
        self._image_counts = _Counts()
        self._blob_counts = _Counts()
        self._sizes: dict[str, list[int]] = {}  # digest -> sizes of its transfers in flight
        self._pulled = 0  # every byte read, including those of failed transfers
        self._settled = 0  # bytes read that belong to finished transfers
        self._done_bytes = 0  # sizes of transfers that succeeded
        self._first_byte: float | None = None  # on ``clock``
        self._swapped: list[tuple[logging.Handler, logging.Handler]] = []

    @property
    def renderable(self) -> RenderableType:
        """The bars as they stand (for tests and snapshots)."""
        return self._progress.get_renderable()

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        self._route_logs()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._progress.stop()
        finally:
            self._restore_logs()

    def _route_logs(self) -> None:
        """Swap the root logger's stream handlers for ones printing through the bars' console."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler):
                replacement = _ConsoleLogHandler(self._progress.console, handler)
                root.removeHandler(handler)
                root.addHandler(replacement)
                self._swapped.append((handler, replacement))

    def _restore_logs(self) -> None:
        root = logging.getLogger()
        for original, replacement in self._swapped:
            root.removeHandler(replacement)
            root.addHandler(original)
        self._swapped.clear()

    # -- events ---------------------------------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """Subscriber for :class:`mirrord.core.events.EventBus`."""
        match event:
            case ev.ImageStarted():
                self._image_counts.known += 1
            case ev.ImageDone():
                self._image_counts.done += 1
            case ev.ImageFailed():
                self._image_counts.failed += 1
            case ev.TransferStarted():
                self._blob_counts.known += 1
                self._sizes.setdefault(event.digest, []).append(event.size)
            case ev.TransferFinished():
                self._transfer_finished(event)
            case ev.BytesTransferred(direction="pulled"):
                self._first_byte = self._clock() if self._first_byte is None else self._first_byte
                self._pulled += event.count
            case ev.RetryScheduled():
                self._blob_counts.retries += 1
            case _:
                return
        self._show()

    def _transfer_finished(self, event: ev.TransferFinished) -> None:
        sizes = self._sizes.get(event.digest)
        size = sizes.pop() if sizes else 0
        if sizes == []:
            del self._sizes[event.digest]
        if event.ok:
            self._blob_counts.done += 1
            self._done_bytes += size
            self._settled += size
        else:
            # Cancelled or failed: not done. Its bytes were read (they count in the rate) but are
            # settled as waste, so they never show as progress of the transfers still going.
            self._blob_counts.known -= 1
            self._blob_counts.failed += 1
            self._settled += min(size, max(0, self._pulled - self._settled))

    def _show(self) -> None:
        update = self._progress.update
        images, blobs = self._image_counts, self._blob_counts
        update(self._images, completed=images.done, total=images.known, note=images.note())
        update(self._blobs, completed=blobs.done, total=blobs.known, note=blobs.note())
        inflight = sum(sum(s) for s in self._sizes.values())
        moving = min(max(0, self._pulled - self._settled), inflight)
        update(
            self._bytes,
            completed=self._done_bytes + moving,
            total=self._done_bytes + inflight,
            rate=self._rate(),
            elapsed=_clock_text(self._clock() - self._started),
        )

    def _rate(self) -> str:
        if self._first_byte is None:
            return ""
        seconds = self._clock() - self._first_byte
        return human_rate(self._pulled / seconds) if seconds > 0 else ""


def _clock_text(seconds: float) -> str:
    whole = int(max(0.0, seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
