"""Running coroutines together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

__all__ = ["finish_in_thread", "gather_all", "gather_or_cancel"]

T = TypeVar("T")


async def gather_or_cancel(jobs: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run jobs together; on the first failure cancel the rest and raise that failure."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def finish_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run blocking I/O in a worker thread; if the caller is cancelled, wait for the thread
    to finish before re-raising, so a descriptor is never closed under a running write."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


async def gather_all(jobs: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run jobs together and let every one finish; then raise the first failure, if any.

    For work whose finished parts are kept (resumable downloads): one failure does not throw
    away the progress of its siblings.
    """
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
