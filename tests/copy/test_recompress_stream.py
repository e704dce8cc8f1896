"""recompress_layer streams: bounded memory on a large layer, nothing left behind on failure."""

from __future__ import annotations

import asyncio
import gzip
import random
import tracemalloc
from pathlib import Path

import pytest
from copykit import until

from mirrord.copy.recompress import RecompressionFailed, discard, recompress_layer
from mirrord.oci import Descriptor, Digest
from mirrord.oci import mediatypes as mt
from mirrord.registry.errors import DigestMismatch
from mirrord.testing.memory import MemoryRegistry, MemoryRepository

MB = 1024 * 1024


def _compressible(size: int) -> bytes:
    """Text-like bytes (words from a small vocabulary): compresses like real files, not like noise."""
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(2000)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=1000)) + b"\n"
    return bytes(out[:size])


def _files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def _source(data: bytes) -> tuple[MemoryRepository, Descriptor]:
    blob = gzip.compress(data, compresslevel=1, mtime=0)
    repo = MemoryRegistry("src", chunk_size=256 * 1024).repository("app")
    repo.registry.add_blob("app", blob)
    return repo, Descriptor(mt.OCI_LAYER_GZIP, Digest.of(blob), len(blob))


async def test_a_large_layer_is_never_held_in_memory(tmp_path: Path) -> None:
    plain = _compressible(48 * MB)
    repo, layer = _source(plain)
    diff_id = Digest.of(plain)
    del plain
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        done = await recompress_layer(repo, layer, diff_id, "zstd", spool_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.uncompressed == 48 * MB
    # Queue, buffers and zstd jobs (~8 MiB measured): not the 48 MiB layer nor its ~20 MiB gzip form.
    assert peak < 12 * MB
    assert done.path.stat().st_size == done.size
    discard(done.path)


async def test_wrong_diff_id_fails_and_removes_the_spool(tmp_path: Path) -> None:
    repo, layer = _source(_compressible(MB))
    with pytest.raises(RecompressionFailed, match="diff_id"):
        await recompress_layer(repo, layer, Digest.of(b"other"), "zstd", spool_dir=tmp_path)
    assert _files(tmp_path) == []


async def test_corrupt_source_fails_clearly(tmp_path: Path) -> None:
    data = _compressible(4 * MB)
    repo, layer = _source(data)
    repo.registry.faults.corrupt_blobs.add(layer.digest)
    with pytest.raises((DigestMismatch, RecompressionFailed)) as info:
        await recompress_layer(repo, layer, Digest.of(data), "zstd", spool_dir=tmp_path)
    assert not isinstance(info.value, BaseExceptionGroup)
    assert "not valid gzip" in str(info.value) or "does not match" in str(info.value)
    assert _files(tmp_path) == []


async def test_cancellation_removes_the_spool(tmp_path: Path) -> None:
    repo, layer = _source(_compressible(8 * MB))
    repo.registry.faults.chunk_delay = 0.01
    task = asyncio.create_task(recompress_layer(repo, layer, Digest.of(b"x"), "zstd", spool_dir=tmp_path))
    await until(lambda: bool(_files(tmp_path)))  # cancel once the spool exists, not at a fixed time
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _files(tmp_path) == []
