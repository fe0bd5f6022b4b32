"""Pacing requests to a registry that asks for a bounded request rate."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Pacer"]


class Pacer:
    """At most `rate` requests per second, spaced evenly (`clock` and `sleep`: the event
    loop's by default)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep

    async def wait(self) -> None:
        """Sleep until this request's turn."""
        async with self._lock:
            now = self._clock() if self._clock else asyncio.get_running_loop().time()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await self._sleep(start - now)
