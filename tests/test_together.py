"""core/together: results in the order given; one coroutine runs in the caller's task."""

from __future__ import annotations

import asyncio

from mirrord.core.together import gather_in_order


async def _after(delay: float, value: int) -> int:
    await asyncio.sleep(delay)
    return value


async def test_results_come_in_the_order_given_not_the_order_finished() -> None:
    assert await gather_in_order([_after(0.02, 1), _after(0.0, 2), _after(0.01, 3)]) == [1, 2, 3]
    assert await gather_in_order([]) == []


async def test_one_coroutine_is_awaited_in_the_callers_task() -> None:
    async def which_task() -> asyncio.Task[object] | None:
        return asyncio.current_task()

    assert await gather_in_order([which_task()]) == [asyncio.current_task()]
    two = await gather_in_order([which_task(), which_task()])
    assert asyncio.current_task() not in two
