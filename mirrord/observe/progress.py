"""Progress bars for one-shot commands on a terminal: images, blobs and bytes.

A subscriber of the engine's events; totals grow as work is discovered, so the bars show done/known.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from mirrord.core import events as ev


class ProgressBars:
    """Context manager showing three bars on stderr while a command runs."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description:>7}"),
            BarColumn(),
            MofNCompleteColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._images = self._progress.add_task("images", total=0)
        self._blobs = self._progress.add_task("blobs", total=0)
        self._bytes = self._progress.add_task("bytes", total=0)
        self._blob_sizes: dict[str, int] = {}

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def _grow(self, task: TaskID, by: int) -> None:
        current = self._progress.tasks[task].total or 0
        self._progress.update(task, total=current + by)

    def on_event(self, event: ev.Event) -> None:
        """Subscriber for :class:`mirrord.core.events.EventBus`."""
        match event:
            case ev.ImageStarted():
                self._grow(self._images, 1)
            case ev.ImageDone() | ev.ImageFailed():
                self._progress.advance(self._images)
            case ev.TransferStarted():
                self._grow(self._blobs, 1)
                self._grow(self._bytes, event.size)
            case ev.TransferFinished():
                self._progress.advance(self._blobs)
            case ev.BytesTransferred(direction="pulled"):
                self._progress.advance(self._bytes, event.count)
            case _:
                pass
