"""The nothing-changed yardstick: a bare aiohttp loop making exactly the HEADs a no-op pass makes.

For every ``(repository, tag)`` in ``REFS.json`` it sends one manifest ``HEAD`` to the source and one
to each target (``mirror/<base>`` there, as the bench's mirrord plan names it), with the ``Accept``
header a mirror sends, ``--concurrency`` (8) in flight, one ``ClientSession`` and its connection pool,
and reads ``Docker-Content-Digest``. No retries, no auth, no logs, no events: the least a mirror can do
to learn that nothing changed. Run as ``python -m bench.headloop SRC REFS.json DST [DST ...]`` so it is
measured as a child process exactly like the tools (its interpreter start-up included, as mirrord's).
``REFS.json`` is a list of ``[repository, tag]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

DEFAULT_CONCURRENCY = 8
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def mirror_repo(repo: str) -> str:
    """Where the bench's mirrord plan puts ``repo`` (``bench.tools.mirrord_repo``, without importing
    yaml into this process)."""
    return "mirror/" + repo.rsplit("/", 1)[-1]


def head_urls(source: str, targets: Sequence[str], refs: Sequence[tuple[str, str]]) -> list[str]:
    """Per ref: the source's manifest URL, then each target's, in that order."""
    urls = []
    for repo, tag in refs:
        urls.append(f"http://{source}/v2/{repo}/manifests/{tag}")
        urls.extend(f"http://{t}/v2/{mirror_repo(repo)}/manifests/{tag}" for t in targets)
    return urls


async def head_all(urls: Sequence[str], concurrency: int) -> int:
    """HEAD every URL, ``concurrency`` at a time; how many answered 200 with a digest."""
    found = 0
    todo = iter(urls)
    headers = {"Accept": ACCEPT}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal found
        for url in todo:
            async with session.head(url, headers=headers) as resp:
                if resp.status == 200 and resp.headers.get("Docker-Content-Digest"):
                    found += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker(session))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """HEAD every ref at the source and each target; exit 1 unless all of them were found."""
    p = argparse.ArgumentParser(prog="python -m bench.headloop", description=__doc__)
    p.add_argument("source")
    p.add_argument("refs", type=Path)
    p.add_argument("targets", nargs="+")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = p.parse_args(argv)
    refs = [(repo, tag) for repo, tag in json.loads(args.refs.read_text())]
    urls = head_urls(args.source, args.targets, refs)
    found = asyncio.run(head_all(urls, args.concurrency))
    print(f"headloop: {found} of {len(urls)} HEADs found", flush=True)
    return 0 if found == len(urls) else 1


if __name__ == "__main__":
    sys.exit(main())
