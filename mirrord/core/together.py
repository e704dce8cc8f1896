"""Running a few coroutines at once and taking their results in order.

For the copy engine's per-image fan-outs (one step per target): usually there is one target, and a
task group and a task for a single coroutine cost more than the step itself, so one is awaited
directly. The coroutines must not raise but for cancellation (each reports its own failure): an
exception would come out bare from a single one, in an ExceptionGroup from several.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import TypeVar

T = TypeVar("T")


async def gather_in_order(coroutines: Sequence[Coroutine[object, object, T]]) -> list[T]:
    """Run ``coroutines`` concurrently (in a task group; one is awaited directly) and return their
    results in the order given."""
    if len(coroutines) <= 1:
        return [await c for c in coroutines]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(c) for c in coroutines]
    return [t.result() for t in tasks]
