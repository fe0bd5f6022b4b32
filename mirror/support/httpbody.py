"""Reading HTTP replies within bounds: never more than a size limit, never slower than a rate.

A server that sends one byte a second keeps a socket read timeout from ever firing;
`StallGuard` ends such a transfer: within every `stall_timeout` seconds at least
`min_rate * stall_timeout` bytes must move (sent or received), and a reply's headers must
come within `stall_timeout` of the last progress. The check runs from one timer per window,
not per chunk, so guarding costs nothing measurable on fast transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable
from typing import TypeVar

import aiohttp

from mirror.errors import TransportError
from mirror.limits import DEFAULT_LIMITS, Limits

__all__ = ["StallGuard", "read_at_most"]

T = TypeVar("T")


class StallGuard:
    """Ends a transfer that moves fewer than `min_rate` bytes a second over a whole window.

    `guard.send(request)` watches a request until its reply's headers; around a body, `async
    with guard.watching():` and `guard.read(resp, n)` for each chunk (or `guard.wait(aw)` and
    `guard.advance(n)`; `guard.counted(chunks)` for a request body). A stall raises a
    retryable TransportError naming `what`.
    """

    def __init__(self, what: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.what = what
        self.window = limits.stall_timeout
        self.quota = max(1, int(limits.min_rate * limits.stall_timeout))
        self._moved = 0
        self._waiting = False
        self._expired = False
        self._cancelled = False
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[StallGuard]:
        """Run the window timer for the body of the block."""
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.window, self._check)
        try:
            yield self
        finally:
            self._timer.cancel()

    def _check(self) -> None:
        if self._moved >= self.quota:
            self._moved = 0
            self._timer = asyncio.get_running_loop().call_later(self.window, self._check)
            return
        self._expired = True
        if self._waiting and self._task is not None:
            self._cancelled = True
            self._task.cancel()

    def advance(self, size: int) -> None:
        """Count `size` bytes moved."""
        self._moved += size

    def _error(self) -> TransportError:
        error = TransportError(
            f"{self.what}: stalled: less than {self.quota} bytes in {self.window:g} s"
        )
        error.retryable = True
        return error

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await the peer; a window that ends without enough progress raises TransportError."""
        if self._expired:
            raise self._error()
        # the task waiting now is the one to stop: a body may be read by several tasks in
        # turn (each request of a chunked upload sends its slice from its own writer task)
        self._task = asyncio.current_task()
        self._waiting = True
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._cancelled and self._task is not None:
                self._cancelled = False
                # ours alone becomes the stall; one asked by anyone else (Ctrl-C, a
                # sibling that failed), even in the same loop turn, stays a cancellation
                if self._task.uncancel() == 0:
                    raise self._error() from None
            raise
        finally:
            self._waiting = False

    async def read(self, resp: aiohttp.ClientResponse, size: int) -> bytes:
        """Up to `size` bytes of a reply body (b"" at its end), counted as progress."""
        chunk = await self.wait(resp.content.read(size))
        self.advance(len(chunk))
        return chunk

    async def send(self, request: Awaitable[aiohttp.ClientResponse]) -> aiohttp.ClientResponse:
        """Send a request and wait for its reply's headers, all under one watch."""
        async with self.watching():
            return await self.wait(request)

    async def counted(self, chunks: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
        """A request body that counts what it hands to the connection."""
        async for chunk in chunks:
            self.advance(len(chunk))
            yield chunk


async def read_at_most(
    resp: aiohttp.ClientResponse,
    limit: int,
    limits: Limits = DEFAULT_LIMITS,
    what: str | None = None,
) -> bytes:
    """The body until EOF, or its first `limit` + 1 bytes if it is longer (so callers can
    tell "too long" from "exactly the limit"); a stalled body raises TransportError.
    `StreamReader.read(n)` alone may stop early."""
    parts: list[bytes] = []
    total = 0
    guard = StallGuard(what or f"reply from {resp.url.host}", limits)
    async with guard.watching():
        while total <= limit:
            chunk = await guard.read(resp, limit + 1 - total)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    return b"".join(parts)
