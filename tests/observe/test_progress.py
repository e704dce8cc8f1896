"""The progress bars as a terminal shows them: recorded by rich at a fixed width, on a fake clock."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from mirrord.core import events as ev
from mirrord.observe.progress import ProgressBars, human_bytes, human_rate
from tests.observe.terminal import screen

MB = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120, record=True, color_system=None)


def _rows(bars: ProgressBars, console: Console) -> dict[str, str]:
    console.print(bars.renderable)
    text = console.export_text(clear=True)
    rows = {}
    for line in text.splitlines():
        words = [w for w in line.split() if w.strip("━╸╺")]  # without the bar itself
        if words:
            rows[words[0]] = " ".join(words[1:])
    return rows


@pytest.fixture
def bars() -> tuple[ProgressBars, Console, Clock]:
    console, clock = _console(), Clock()
    return ProgressBars(console, clock=clock, auto_refresh=False), console, clock


def _copy_blob(
    bars: ProgressBars, digest: str, size: int, *, ok: bool = True, read: int | None = None
) -> None:
    bars.on_event(ev.TransferStarted(digest, size))
    bars.on_event(ev.BytesTransferred("src", "pulled", size if read is None else read))
    bars.on_event(ev.TransferFinished(digest, ok))


def test_each_row_has_its_own_unit_and_one_human_rate(bars: tuple[ProgressBars, Console, Clock]) -> None:
    progress, console, clock = bars
    for i in range(8):
        progress.on_event(ev.ImageStarted("e", f"src/app:{i}", ("dst/app",)))
    _copy_blob(progress, "sha256:a", 1)  # the first byte starts the rate clock
    clock.now += 3.0
    for i in range(4):
        _copy_blob(progress, f"sha256:{i}", 64 * MB)
    for i in range(8):
        progress.on_event(ev.ImageDone("e", f"src/app:{i}", "sha256:x", {}, "copied", 0))
    rows = _rows(progress, console)
    assert rows["images"] == "8/8"
    assert rows["blobs"] == "5/5"
    # 256 MB in 3 s: one size in one unit, one rate, no raw byte counts.
    assert rows["bytes"] == "256.0/256.0 MB 85.3 MB/s 0:00:03"


def test_growing_totals_and_partial_progress(bars: tuple[ProgressBars, Console, Clock]) -> None:
    progress, console, clock = bars
    progress.on_event(ev.ImageStarted("e", "src/app:1", ("dst/app",)))
    progress.on_event(ev.TransferStarted("sha256:a", 10 * MB))
    progress.on_event(ev.TransferStarted("sha256:b", 10 * MB))
    progress.on_event(ev.BytesTransferred("src", "pulled", 5 * MB))
    assert _rows(progress, console)["bytes"] == "5.0/20.0 MB 0:00:00"  # no rate from one instant
    clock.now += 1
    progress.on_event(ev.BytesTransferred("src", "pulled", 5 * MB))
    progress.on_event(ev.BytesTransferred("dst", "pushed", 5 * MB))  # pushes are not counted twice
    rows = _rows(progress, console)
    assert rows["images"] == "0/1"
    assert rows["blobs"] == "0/2"
    assert rows["bytes"] == "10.0/20.0 MB 10.0 MB/s 0:00:01"


def test_failures_and_retries_are_visible_and_cancelled_transfers_are_not_done(
    bars: tuple[ProgressBars, Console, Clock],
) -> None:
    progress, console, clock = bars
    progress.on_event(ev.ImageStarted("e", "src/app:1", ("dst/app",)))
    progress.on_event(ev.ImageStarted("e", "src/app:2", ("dst/app",)))
    _copy_blob(progress, "sha256:a", 10 * MB)
    # A transfer cancelled half way: not done, its bytes are not progress of anything.
    _copy_blob(progress, "sha256:b", 10 * MB, ok=False, read=5 * MB)
    progress.on_event(ev.RetryScheduled("dst", "blob", 0.5))
    progress.on_event(ev.RetryScheduled("dst", "blob", 1.0))
    progress.on_event(ev.ImageDone("e", "src/app:1", "sha256:x", {}, "copied", 0))
    progress.on_event(ev.ImageFailed("e", "src/app:2", "boom"))
    clock.now += 2
    progress.on_event(ev.TransferStarted("sha256:c", 10 * MB))
    rows = _rows(progress, console)
    assert rows["images"] == "1/2 1 failed"
    assert rows["blobs"] == "1/2 2 retries, 1 failed"
    assert rows["bytes"] == "10.0/20.0 MB 7.5 MB/s 0:00:02"


def test_log_records_go_above_the_bars_and_handlers_come_back() -> None:
    terminal = io.StringIO()
    # The handler a one-shot command installs, writing to the same terminal as the bars.
    original = logging.StreamHandler(terminal)
    original.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved = list(root.handlers)
    for handler in saved:
        root.removeHandler(handler)
    root.addHandler(original)
    console = Console(file=terminal, force_terminal=True, width=100, color_system=None)
    try:
        with ProgressBars(console, clock=Clock(), auto_refresh=False) as bars:
            assert original not in root.handlers
            bars.on_event(ev.ImageStarted("e", "src/app:1", ("dst/app",)))
            logging.getLogger("mirrord.test").warning("retrying :x: registry=dst")
        assert root.handlers == [original]
    finally:
        root.removeHandler(original)
        for handler in saved:
            root.addHandler(handler)
    lines = screen(terminal.getvalue())
    assert lines[0] == "WARNING mirrord.test: retrying :x: registry=dst"  # whole, on its own line
    assert [line.split()[0] for line in lines[1:]] == ["images", "blobs", "bytes"]
    assert lines[1].endswith("0/1")


@pytest.mark.parametrize(
    ("count", "unit_of", "expected"),
    [
        (0, None, ("0", "B")),
        (999, None, ("999", "B")),
        (85_300_000, None, ("85.3", "MB")),
        (5 * MB, 2_000 * MB, ("0.0", "GB")),
        (1_500, None, ("1.5", "kB")),
    ],
)
def test_human_bytes(count: int, unit_of: int | None, expected: tuple[str, str]) -> None:
    assert human_bytes(count, unit_of) == expected


def test_human_rate() -> None:
    assert human_rate(256 * MB / 3) == "85.3 MB/s"
