"""Streaming layer recompression (gzip <-> zstd).

:func:`recompress_layer` never holds a layer in memory: the event loop streams the source blob
(verified against its digest by the stream itself) into a small bounded queue; one worker thread
decompresses, hashes the uncompressed tar (it must equal the config's diff_id), re-encodes
(zstd with ``threads`` workers: both cores), hashes the output and writes it to a spool file. The
compressed digest is only known at the end, so the upload reads the spool afterwards.

Outputs are deterministic (zstd with a fixed level and threads >= 1; gzip from zlib with a zero
mtime), so re-encoding the same layer twice gives the same digest.
:class:`~mirrord.copy.conversions.ConversionMap` remembers (source digest, compression) -> (digest,
size) in memory and, given a path, in a small JSON state file, so a later pass only HEADs the
converted digest at the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import logging
import os
import queue
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from mirrord.copy.errors import CopyError
from mirrord.oci import Descriptor, Digest
from mirrord.oci.convert import Codec
from mirrord.registry.base import Repository, UploadSession
from mirrord.registry.errors import RegistryError

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
#: Chunks buffered between the event loop and the worker thread (bounded memory).
QUEUE_CHUNKS = 8
ZSTD_LEVEL = 3
ZSTD_JOB_SIZE = 2 * 1024 * 1024
GZIP_LEVEL = 6
_EOF = b""


class RecompressionFailed(CopyError):
    """A layer could not be re-encoded: it did not decompress, or not to its diff_id. ``echo`` marks
    the worker's report of a failure that happened elsewhere (the feed, a stop)."""

    def __init__(self, message: str, *, echo: bool = False) -> None:
        super().__init__(message)
        self.echo = echo


@dataclass(frozen=True, slots=True)
class Recompressed:
    """A re-encoded layer in a spool file: its digest and size, and what was read and written."""

    digest: Digest
    size: int
    path: Path
    read: int
    uncompressed: int
    seconds: float


async def recompress_layer(
    source: Repository,
    layer: Descriptor,
    diff_id: Digest,
    to: Codec,
    *,
    spool_dir: Path | None = None,
    threads: int = 2,
) -> Recompressed:
    """Re-encode ``layer`` of ``source`` as ``to`` into a spool file (the caller deletes it).

    Raises RecompressionFailed when the layer does not decompress to ``diff_id``; registry errors
    (DigestMismatch included) propagate. The spool file is removed when this raises.
    """
    fd, name = tempfile.mkstemp(prefix="mirrord-layer-", dir=spool_dir)
    os.close(fd)
    worker = _Worker(_codec_of(layer, to), to, Path(name), threads)
    started = time.monotonic()
    try:
        async with asyncio.TaskGroup() as group:
            work = group.create_task(asyncio.to_thread(worker.run))
            group.create_task(_feed(source, layer, worker))
        digest, size, uncompressed, read = work.result()
    except BaseExceptionGroup as group:
        discard(Path(name))
        raise _cause(group) from None
    except BaseException:
        discard(Path(name))
        raise
    finally:
        worker.stop.set()
    if uncompressed != diff_id:
        discard(Path(name))
        raise RecompressionFailed(
            f"layer {layer.digest} decompresses to {uncompressed}, not its diff_id {diff_id}"
        )
    return Recompressed(digest, size, Path(name), read, worker.uncompressed_size, time.monotonic() - started)


def _cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that explains a failed recompression: the source's (a registry error, a digest
    mismatch) over the worker's, and the worker's own over its echo of the feed's."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    ranked = sorted(
        leaves,
        key=lambda e: (isinstance(e, RecompressionFailed) and e.echo, not isinstance(e, RegistryError)),
    )
    return ranked[0]


def discard(path: Path) -> None:
    """Remove a spool file if it is still there."""
    path.unlink(missing_ok=True)


def _codec_of(layer: Descriptor, to: Codec) -> Codec:
    return "zstd" if to == "gzip" else "gzip"


async def _feed(source: Repository, layer: Descriptor, worker: _Worker) -> None:
    try:
        async with source.blob_open(layer.digest) as stream:
            async for chunk in stream:
                await worker.put(chunk)
        await worker.put(_EOF)
    except BaseException as exc:
        worker.fail(exc)
        raise


class _Worker:
    """Decompress, hash, re-encode and spool in one thread, fed through a bounded queue."""

    def __init__(self, source_codec: Codec, to: Codec, spool: Path, threads: int) -> None:
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.stop = threading.Event()
        self.source_codec = source_codec
        self.to = to
        self.spool = spool
        self.threads = threads
        self.uncompressed_size = 0

    async def put(self, item: bytes) -> None:
        """Queue a chunk (``_EOF`` ends the stream), yielding to the loop while the queue is full."""
        while True:
            if self.stop.is_set():
                raise RecompressionFailed("recompression stopped", echo=True)
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.002)

    def fail(self, error: BaseException) -> None:
        """Make the worker stop with ``error`` (the feed failed)."""
        self.stop.set()
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(error)

    def run(self) -> tuple[Digest, int, Digest, int]:
        """(output digest, output size, uncompressed digest, bytes read); in a worker thread."""
        reader = _QueueReader(self)
        plain = hashlib.sha256()
        out = hashlib.sha256()
        size = 0
        encoder = _encoder(self.to, self.threads)
        with _decoder(self.source_codec, reader) as decoded, self.spool.open("wb") as spool:
            while data := _read(decoded, self.source_codec):
                plain.update(data)
                self.uncompressed_size += len(data)
                size += _write(spool, out, encoder.compress(data))
            size += _write(spool, out, encoder.flush())
        return (
            Digest("sha256", out.hexdigest()),
            size,
            Digest("sha256", plain.hexdigest()),
            reader.read_bytes,
        )


def _read(decoded: Any, codec: Codec) -> bytes:
    try:
        data: bytes = decoded.read(CHUNK)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise RecompressionFailed(f"layer is not valid {codec}: {exc}") from exc
    return data


def _write(spool: io.BufferedWriter, hasher: Any, data: bytes) -> int:
    if data:
        hasher.update(data)
        spool.write(data)
    return len(data)


class _Encoder:
    """compress/flush over zstd or gzip."""

    def __init__(self, compress: Any, flush: Any) -> None:
        self.compress = compress
        self.flush = flush


def _encoder(to: Codec, threads: int) -> _Encoder:
    if to == "zstd":
        # Small jobs: zstd's multi-threaded mode otherwise buffers and returns ~8 MiB at a time.
        params = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, threads=max(1, threads), job_size=ZSTD_JOB_SIZE
        )
        obj = zstandard.ZstdCompressor(compression_params=params).compressobj()
        return _Encoder(obj.compress, obj.flush)
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip wrapper, zero mtime
    return _Encoder(deflate.compress, deflate.flush)


def _decoder(codec: Codec, reader: _QueueReader) -> Any:
    buffered = io.BufferedReader(reader, CHUNK)
    if codec == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    return gzip.GzipFile(fileobj=buffered, mode="rb")  # reads every gzip member


class _QueueReader(io.RawIOBase):
    """A raw reader over the worker's queue; raises the feed's error, stops when told to."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.pending = memoryview(b"")
        self.ended = False
        self.read_bytes = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the queue; 0 at the end of the stream."""
        while not self.pending and not self.ended:
            item = self._get()
            if isinstance(item, BaseException):
                raise RecompressionFailed(f"layer read failed: {item}", echo=True) from item
            self.ended = item == _EOF
            self.pending = memoryview(item)
            self.read_bytes += len(item)
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count

    def _get(self) -> bytes | BaseException:
        while True:
            try:
                return self.worker.queue.get(timeout=0.1)
            except queue.Empty:
                if self.worker.stop.is_set():
                    raise RecompressionFailed("recompression stopped", echo=True) from None


async def spool_upload(
    target: Repository, done: Recompressed, *, upload: UploadSession | None = None
) -> None:
    """Upload the spooled layer to ``target``, reading the file off the event loop; through
    ``upload`` when a refused mount started that session."""
    # Opened on the loop (a local open is quick): opened in a thread, a cancellation could lose it.
    handle = _open_spool(done.path)
    try:
        await target.blob_put(done.digest, done.size, _chunks(handle), upload=upload)
    finally:
        handle.close()


def _open_spool(path: Path) -> io.BufferedReader:
    return path.open("rb")


async def _chunks(handle: io.BufferedReader) -> AsyncIterator[bytes]:
    while data := await asyncio.to_thread(handle.read, CHUNK):
        yield data
