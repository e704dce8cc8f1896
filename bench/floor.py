"""The floor: every distinct blob copied once — one GET at the source, one POST + one PUT at the target.

Nothing else: no manifests, no existence checks, no mounts, no tags. With ``--also`` each blob is read
once and teed into one POST + PUT per target: the floor for several targets. That is the least any mirror must
do to move the unique bytes, so its time is the floor the others are compared with (the manifests are
left out, which flatters the floor slightly: they are a few hundred small requests). Blobs stream from
the GET body into the PUT body with at most ``concurrency`` transfers in flight, like mirrord's blob
streams. Run as ``python -m bench.floor SRC DST BLOBS.json [--concurrency N]`` so it is measured as a
child process exactly like the tools; ``BLOBS.json`` is a list of ``[digest, size, repository]``
(``--also HOST:PORT``, repeatable, adds targets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
from yarl import URL

DEFAULT_CONCURRENCY = 8
READ_CHUNK = 256 << 10
QUEUE_CHUNKS = 8


class FloorError(Exception):
    """A registry answered something the floor copier did not expect."""


async def copy_blob(
    session: aiohttp.ClientSession, src: str, dsts: Sequence[str], digest: str, size: int, repo: str
) -> None:
    """Stream one blob from ``src`` to the same repository name at every ``dsts`` host: one GET,
    and per target one POST and one PUT, the read teed into every PUT (the slowest sets the pace)."""
    async with session.get(f"http://{src}/v2/{repo}/blobs/{digest}") as got:
        if got.status != 200:
            raise FloorError(f"GET {repo}@{digest}: {got.status}")
        locations = [await _start_upload(session, dst, repo) for dst in dsts]
        # A reader task and each PUT body meet in a small queue, so reading the source overlaps
        # writing the targets (one coroutine alternating both would leave each side idle half the time).
        queues: list[asyncio.Queue[bytes | None]] = [asyncio.Queue(QUEUE_CHUNKS) for _ in dsts]

        async def pump() -> None:
            async for chunk in got.content.iter_chunked(READ_CHUNK):
                for queue in queues:
                    await queue.put(chunk)
            for queue in queues:
                await queue.put(None)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump())
            for location, queue in zip(locations, queues, strict=True):
                tg.create_task(_put(session, location, queue, digest, size, repo))


async def _start_upload(session: aiohttp.ClientSession, dst: str, repo: str) -> URL:
    async with session.post(f"http://{dst}/v2/{repo}/blobs/uploads/") as started:
        await started.read()
        if started.status != 202:
            raise FloorError(f"POST upload {repo}: {started.status}")
        return URL(f"http://{dst}").join(URL(started.headers["Location"]))


async def _put(
    session: aiohttp.ClientSession,
    location: URL,
    queue: asyncio.Queue[bytes | None],
    digest: str,
    size: int,
    repo: str,
) -> None:
    async def body() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk

    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    async with session.put(location.update_query(digest=digest), data=body(), headers=headers) as put:
        await put.read()
        if put.status != 201:
            raise FloorError(f"PUT {repo}@{digest}: {put.status}")


async def copy_all(
    src: str, dsts: Sequence[str], blobs: Sequence[tuple[str, int, str]], concurrency: int
) -> int:
    """Copy every blob to every target with at most ``concurrency`` blobs in flight; the bytes read."""
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=(1 + len(dsts)) * concurrency)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)

    async def one(digest: str, size: int, repo: str) -> None:
        async with limit:
            await copy_blob(session, src, dsts, digest, size, repo)

    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        asyncio.TaskGroup() as tg,
    ):
        for digest, size, repo in blobs:
            tg.create_task(one(digest, size, repo))
    return sum(size for _, size, _ in blobs)


def write_blob_list(path: Path, blobs: dict[str, str], sizes: dict[str, int]) -> None:
    """Write ``BLOBS.json`` from digest -> repository and digest -> size."""
    path.write_text(json.dumps([[d, sizes[d], repo] for d, repo in blobs.items()]))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.floor SRC DST BLOBS.json [--also DST2 ...] [--concurrency N]``; prints bytes
    and seconds."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description="Copy every distinct blob once."
    )
    parser.add_argument("source", help="HOST:PORT")
    parser.add_argument("target", help="HOST:PORT")
    parser.add_argument("blobs", type=Path)
    parser.add_argument(
        "--also", action="append", default=[], metavar="HOST:PORT", help="another target (repeatable)"
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = parser.parse_args(argv)
    blobs = [(str(d), int(s), str(r)) for d, s, r in json.loads(args.blobs.read_text())]
    start = time.perf_counter()
    try:
        copied = asyncio.run(copy_all(args.source, [args.target, *args.also], blobs, args.concurrency))
    except Exception as exc:  # report every leaf of the task group's failure, then exit 1
        for leaf in _leaves(exc):
            print(f"floor: {type(leaf).__name__}: {leaf}", file=sys.stderr)
        return 1
    print(f"floor: {len(blobs)} blobs, {copied} bytes in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
