"""Running coroutines together, as structured concurrency: every task started here has ended
before the call that started it returns or raises, so nothing a task uses is closed under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = [
    "at_most",
    "finish_in_thread",
    "gather_all",
    "stoppable_in_thread",
    "task_scope",
    "together",
]

T = TypeVar("T")
R = TypeVar("R")


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group's failure (depth first), unwrapped."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found


@contextlib.asynccontextmanager
async def task_scope() -> AsyncIterator[asyncio.TaskGroup]:
    """An `asyncio.TaskGroup` that raises its first failure as it is (not an exception
    group): the first failure cancels the others, and all have ended when it leaves."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as errors:
        raise first_error(errors) from None


async def together(jobs: Iterable[Awaitable[T]]) -> list[T]:
    """Run jobs as one task group; their results in order. The first failure cancels the
    rest and is raised once all have ended."""
    async with task_scope() as group:
        tasks = [group.create_task(_awaited(job)) for job in jobs]
    return [task.result() for task in tasks]


async def _awaited(job: Awaitable[T]) -> T:
    return await job


async def at_most(limit: int, items: Sequence[T], work: Callable[[T], Awaitable[R]]) -> list[R]:
    """`work(item)` for every item, at most `limit` at once, as one task group; the results
    in the items' order. Only `limit` tasks exist at a time (not one per item, as `together`
    would make): a run over 100,000 images holds 64 coroutines, not 100,000. The first
    failure cancels the rest and is raised once all have ended."""
    results: dict[int, R] = {}
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, item in queue:  # one iterator shared: each item is taken once
            results[index] = await work(item)

    async with task_scope() as group:
        for _ in range(min(max(1, limit), len(items))):
            group.create_task(worker())
    return [results[index] for index in range(len(items))]


async def finish_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run blocking I/O in a worker thread; if the caller is cancelled, wait for the thread
    to finish before re-raising, so a descriptor is never closed under a running write."""
    return await _in_thread(functools.partial(func, *args), None)


async def stoppable_in_thread(func: Callable[..., T], *args: Any) -> T:
    """`func(*args, stop)` in a worker thread, `stop` a `threading.Event`: if the caller is
    cancelled, `stop` is set and the thread waited for (it ends at its next check) before
    the cancellation goes on, so long work does not hold a signal up."""
    stop = threading.Event()
    return await _in_thread(functools.partial(func, *args, stop), stop)


async def _in_thread(call: Callable[[], T], stop: threading.Event | None) -> T:
    loop = asyncio.get_running_loop()
    run = functools.partial(contextvars.copy_context().run, call)
    future = loop.run_in_executor(None, run)  # a future, not a task: nothing per call to run
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if stop is not None:
            stop.set()
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # the cancellation is what is raised: the thread's error is seen
        raise


async def gather_all(jobs: Sequence[Awaitable[None]]) -> None:
    """Run jobs together and let every one finish; then raise the first failure, if any.

    For work whose finished parts are kept (resumable downloads): one failure does not throw
    away the progress of its siblings.
    """
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
