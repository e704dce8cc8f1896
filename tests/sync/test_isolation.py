"""One entry's unexpected error is that entry's error; the pass's other entries finish."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mirrord.testing.hub import MemoryRegistries
from tests.sync.runkit import plan, push_tags, repo, run

TWO = """\
  - name: good
    source: src.example/good
    target: dst.example/good
  - name: bad
    source: src.example/bad
    target: dst.example/bad
"""


async def test_a_bug_in_one_entry_does_not_cancel_the_others(caplog: pytest.LogCaptureFixture) -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "src.example/good"), "1", "2")
    await push_tags(repo(hub, "src.example/bad"), "1")
    good_copying = asyncio.Event()

    async def hook(method: str, repository: str, reference: str) -> None:
        if repository == "good" and method == "blob_put":
            good_copying.set()
        if repository == "bad" and method == "tags_list":
            # Fail only while the good entry is mid-copy: a shared TaskGroup would cancel it here.
            await good_copying.wait()
            raise RuntimeError("a bug, not a registry error")

    hub.faults.hook = hook
    with caplog.at_level(logging.ERROR, logger="mirrord.sync.runner"):
        reports = {r.entry: r for r in await run(hub, plan(TWO))}

    assert reports["good"].ok, reports["good"]
    assert sorted(i.result for i in reports["good"].images) == ["copied", "copied"]
    assert await repo(hub, "dst.example/good").tags_list() == ["1", "2"]
    assert not reports["bad"].ok
    assert reports["bad"].error == "unexpected error: RuntimeError: a bug, not a registry error"
    assert reports["bad"].finished >= reports["bad"].started
    [record] = [r for r in caplog.records if r.getMessage() == "entry failed unexpectedly"]
    assert record.exc_info is not None  # the traceback is logged, not only the string
    assert record.__dict__["fields"] == {"entry": "bad"}


async def test_cancelling_the_pass_still_cancels_every_entry() -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "src.example/good"), "1")
    await push_tags(repo(hub, "src.example/bad"), "1")
    listing = asyncio.Event()

    async def hook(method: str, repository: str, reference: str) -> None:
        if method == "tags_list":
            listing.set()
            await asyncio.Event().wait()  # until cancelled

    hub.faults.hook = hook
    task = asyncio.create_task(run(hub, plan(TWO)))
    await listing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
