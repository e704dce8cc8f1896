"""Atomic files: written to a temporary file beside the final path, fsynced, renamed into place.

The one writer every file mirrord keeps goes through (layout blobs and index.json, the state
directory's JSON files, reports): a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol


class Hasher(Protocol):
    """Anything fed the bytes as they are written (a digest hasher)."""

    def update(self, data: bytes, /) -> None: ...


class AtomicWriter:
    """A temporary file next to the final path: written, fsynced and renamed, or removed.

    ``write`` and ``commit`` run in worker threads; ``abort`` runs on the event loop, possibly while
    a cancelled ``write`` or ``commit`` is still running in its thread. ``abort`` therefore never
    waits: it unlinks the temporary file at once (POSIX keeps the open file usable) and closes the
    file only if no operation holds it; otherwise that operation closes it when it ends.
    """

    def __init__(self, path: Path, temp: Path, file: BinaryIO) -> None:
        self._path = path
        self._temp = temp
        self._file = file
        self._lock = threading.Lock()
        self._aborted = False

    @classmethod
    def create(cls, path: Path) -> AtomicWriter:
        """Open a fresh temporary file in ``path``'s directory (created if needed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name[:16]}.", suffix=".tmp", dir=path.parent)
        return cls(path, Path(temp), os.fdopen(fd, "wb"))

    def write(self, chunks: Iterable[bytes], hasher: Hasher | None = None) -> None:
        """Append ``chunks``, feeding ``hasher`` too (OSError once aborted)."""
        with self._exclusive():
            for chunk in chunks:
                if hasher is not None:
                    hasher.update(chunk)
                self._file.write(chunk)

    def commit(self) -> None:
        """fsync, then rename over the final path, then fsync the directory (durable rename)."""
        with self._exclusive():
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._temp, 0o644)
            os.replace(self._temp, self._path)
        fsync_directory(self._path.parent)

    def abort(self) -> None:
        """Remove the temporary file and close it, without blocking (idempotent)."""
        self._aborted = True
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()
        if self._lock.acquire(blocking=False):
            try:
                self._file.close()
            finally:
                self._lock.release()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            with self._lock:
                if self._aborted:
                    raise OSError(f"write to {self._temp} was aborted")
                yield
        finally:
            # abort() may have run while we held the lock and left the closing to us. It sets the
            # flag before trying the lock, so one of the two always sees the other and closes.
            if self._aborted:
                with self._lock:
                    self._file.close()


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (its directory is created if needed):
    readers see the old content or the new, never a part; on failure the old file stays."""
    writer = AtomicWriter.create(path)
    try:
        writer.write([data])
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def fsync_directory(path: Path) -> None:
    """fsync the directory ``path``, so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
