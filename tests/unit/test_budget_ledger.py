"""The rationed budget spent locally: the first request alone, then a counter that replies
only lower, until the announced window has passed."""

from __future__ import annotations

import asyncio

import pytest

from mirror.errors import BudgetReserved
from mirror.registry.ledger import BudgetLedger
from mirror.registry.ratelimit import Budget


async def test_the_first_request_goes_alone_until_the_budget_is_announced() -> None:
    ledger = BudgetLedger("hub", reserve=1)
    assert await ledger.spend("m0") is True
    waiting = [asyncio.create_task(ledger.spend(f"m{n}")) for n in range(1, 5)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in waiting)
    ledger.note(Budget(remaining=3, limit=4, window=3600))
    ledger.probed(answered=True)
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert outcomes[:2] == [False, False]  # 3 left, 1 kept: two more go
    assert all(isinstance(o, BudgetReserved) for o in outcomes[2:])


async def test_a_probe_without_an_answer_hands_the_probe_on() -> None:
    ledger = BudgetLedger("hub", reserve=0)
    assert await ledger.spend("m0") is True
    second = asyncio.create_task(ledger.spend("m1"))
    await asyncio.sleep(0)
    ledger.probed(answered=False)  # the connection was cut: the budget is still unknown
    assert await second is True


async def test_a_registry_that_announces_nothing_is_not_rationed() -> None:
    ledger = BudgetLedger("quiet", reserve=5)
    assert await ledger.spend("m0") is True
    ledger.probed(answered=True)
    assert [await ledger.spend(f"m{n}") for n in range(1, 20)] == [False] * 19


async def test_replies_lower_the_count_but_never_raise_it_within_the_window() -> None:
    now = [0.0]
    ledger = BudgetLedger("hub", reserve=0, clock=lambda: now[0])
    ledger.note(Budget(remaining=10, window=60))
    for _ in range(4):
        await ledger.spend("m")
    assert ledger.left == 6
    ledger.note(Budget(remaining=9, window=60))  # late: sent before our four were counted
    assert ledger.left == 6
    ledger.note(Budget(remaining=2, window=60))  # someone else spends it too
    assert ledger.left == 2
    now[0] = 61.0
    ledger.note(Budget(remaining=10, window=60))  # a new window
    assert ledger.left == 10


async def test_down_to_the_reserve_refuses_with_the_reason() -> None:
    ledger = BudgetLedger("hub", reserve=2)
    ledger.note(Budget(remaining=3))
    assert await ledger.spend("m1") is False
    with pytest.raises(BudgetReserved, match=r"hub has 2 requests .* reserve kept \(2\)"):
        await ledger.spend("manifest app:v1")
