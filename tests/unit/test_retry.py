"""The one retry helper: waits, and tries counted in one place."""

from __future__ import annotations

import logging

import pytest

from mirror.errors import RateLimited, ServerError, TransportError
from mirror.retry import Attempt, Repeat, RetryPolicy, log_retry

_FAST = RetryPolicy(retries=3, initial=0.001, maximum=0.001)


async def test_a_retried_operation_inside_another_is_tried_once_per_outer_try() -> None:
    tries = 0

    async def failing() -> None:
        nonlocal tries
        tries += 1
        raise TransportError("reset")

    async def outer() -> None:
        await _FAST.call(failing)

    with pytest.raises(TransportError):
        await _FAST.call(outer)
    assert tries == _FAST.retries + 1


def test_a_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(retry_after_cap=2.0)
    assert policy.delay(RateLimited("slow down", retry_after=1.5), 1) == 1.5
    assert policy.delay(RateLimited("slow down", retry_after=1e9), 1) == 2.0
    assert 0.2 <= policy.delay(ServerError("503"), 1) <= 0.4
    assert policy.delay(ServerError("503"), 40) == policy.maximum


async def test_a_checked_operation_is_told_when_an_earlier_answer_was_lost() -> None:
    seen: list[tuple[int, bool]] = []

    async def step(attempt: Attempt) -> str:
        seen.append((attempt.number, attempt.after_lost_answer))
        if attempt.number == 1:
            raise TransportError("refused before sending")  # nothing went out
        if attempt.number == 2:
            attempt.answer_lost = True  # went out; the answer was lost
            raise TransportError("cut")
        if attempt.number == 3:
            raise TransportError("refused before sending")
        return "done"

    assert await _FAST.run(step, Repeat.CHECKED) == "done"
    assert seen == [(1, False), (2, False), (3, True), (4, True)]


def test_a_wait_under_ten_seconds_is_said_to_the_tenth(caplog: pytest.LogCaptureFixture) -> None:
    """The first retry's wait (0.2 s and jitter) was said "retrying in 0 s"."""
    with caplog.at_level(logging.INFO, logger="mirror.retry"):
        for delay in (0.23, 0.04, 1.66, 12.4):
            log_retry(delay, TransportError("reset"))
    assert [r.getMessage() for r in caplog.records] == [
        "retrying in 0.2 s: reset",
        "retrying in 0.1 s: reset",
        "retrying in 1.7 s: reset",
        "retrying in 12 s: reset",
    ]
