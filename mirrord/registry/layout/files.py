"""Blocking file helpers for layout directories (run in worker threads): sizes, positioned opens and
the directory locks that serialise index.json updates within a process and across processes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def open_at(path: Path, offset: int) -> tuple[BinaryIO, int]:
    """The file positioned at ``offset``, and its size."""
    file = path.open("rb")
    try:
        size = os.fstat(file.fileno()).st_size
        if offset > size:
            raise ValueError(f"offset {offset} is past the end ({size} bytes)")
        file.seek(offset)
    except BaseException:
        file.close()
        raise
    return file, size


# One lock per (event loop, layout directory): asyncio locks must not cross loops, and two
# LayoutRepository objects for the same directory must still serialise their index.json updates.
_index_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def directory_lock(root: Path) -> Iterator[None]:
    """An exclusive flock on the layout directory itself, so that other processes (another mirrord
    replica, a second ``mirrord copy``) do not interleave their index.json read-modify-write with
    ours. Blocking: call only in a worker thread."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def index_lock(root: Path) -> asyncio.Lock:
    locks = _index_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(root, asyncio.Lock())
