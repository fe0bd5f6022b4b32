"""`at_most`: work over many items with only so many tasks at once, results in order, the
first failure ending the rest; and the bare first try of `RetryPolicy.run`."""

from __future__ import annotations

import asyncio

import pytest

from mirror.errors import ServerError
from mirror.retry import Attempt, Repeat, RetryPolicy
from mirror.support.tasks import at_most


async def test_results_come_in_order_with_only_the_limit_running() -> None:
    running = peak = 0
    tasks_seen: set[asyncio.Task[object] | None] = set()

    async def work(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        tasks_seen.add(asyncio.current_task())
        await asyncio.sleep(0.001 * (item % 3))
        running -= 1
        return item * 2

    items = list(range(200))
    assert await at_most(8, items, work) == [i * 2 for i in items]
    assert peak == 8
    assert len(tasks_seen) == 8  # eight tasks did all the work, not one per item
    assert await at_most(8, [], work) == []


async def test_the_first_failure_ends_the_others_and_is_raised_as_it_is() -> None:
    done: list[int] = []

    async def work(item: int) -> int:
        if item == 3:
            raise ValueError("item 3")
        await asyncio.sleep(0.01)
        done.append(item)
        return item

    with pytest.raises(ValueError, match="item 3"):
        await at_most(4, list(range(100)), work)
    assert len(done) < 100


async def test_a_retried_operation_is_tried_bare_first_then_by_tenacity() -> None:
    tries: list[int] = []

    async def flaky(attempt: Attempt) -> str:
        tries.append(attempt.number)
        if len(tries) < 3:
            raise ServerError("503 from the registry", status=503, retryable=True)
        return "done"

    policy = RetryPolicy(5, initial=0.001, maximum=0.002)
    assert await policy.run(flaky, Repeat.WHOLE) == "done"
    assert tries == [1, 2, 3]
    tries.clear()
    with pytest.raises(ServerError):
        await RetryPolicy(1, initial=0.001, maximum=0.002).run(flaky, Repeat.WHOLE)
    assert tries == [1, 2]  # one retry: two tries in all
