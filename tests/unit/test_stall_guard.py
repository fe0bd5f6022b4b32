"""StallGuard: a window without progress is a retryable error; a cancellation stays one."""

from __future__ import annotations

import asyncio

import pytest

from mirror.errors import TransportError
from mirror.limits import Limits
from mirror.support.httpbody import StallGuard


def _guard() -> StallGuard:
    return StallGuard("blob x", Limits(stall_timeout=3600.0, min_rate=1))


async def test_a_stall_alone_is_a_retryable_transport_error() -> None:
    guard = _guard()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        async with guard.watching():
            await guard.wait(never)

    task = asyncio.create_task(read())
    await asyncio.sleep(0)
    guard._check()  # the window ends with nothing moved
    with pytest.raises(TransportError, match="stalled") as stalled:
        await task
    assert stalled.value.retryable


async def test_a_cancel_in_the_turn_a_stall_fires_is_a_cancellation() -> None:
    """Ctrl-C (a cancel of the task) in the same loop turn as the stall timer: the task is
    cancelled, not handed a retryable error that a retry loop would swallow."""
    guard = _guard()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        async with guard.watching():
            await guard.wait(never)

    task = asyncio.create_task(read())
    await asyncio.sleep(0)
    guard._check()  # the window ends with nothing moved: the guard cancels the task
    task.cancel()  # and the user's cancel comes in the same turn
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
