"""The one retry policy: which errors are retried, how long to wait, how often.

Retried: errors whose `retryable` is true (408, 429, 5xx, TOOMANYREQUESTS/UNAVAILABLE codes,
connection resets and timeouts). Waits grow exponentially with jitter; a `Retry-After` from
the registry wins, capped so a hostile value cannot stall a run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from mirror.errors import MirrorError, RateLimited

__all__ = ["DEFAULT_RETRIES", "RetryPolicy", "is_retryable"]

T = TypeVar("T")
DEFAULT_RETRIES = 5
_log = logging.getLogger("mirror.retry")


def is_retryable(exc: BaseException) -> bool:
    """True for errors worth another try, read from their `retryable` attribute only."""
    return isinstance(exc, MirrorError) and exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait between tries."""

    retries: int = DEFAULT_RETRIES
    initial: float = 0.2
    maximum: float = 10.0
    retry_after_cap: float = 60.0

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next try: the server's Retry-After (capped) or backoff."""
        exc = state.outcome.exception() if state.outcome else None
        return self.delay(exc, state.attempt_number)

    def delay(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based) ended with `exc`."""
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.retry_after_cap)
        state = RetryCallState(self.retrying(), None, (), {})
        state.attempt_number = attempt
        return float(
            wait_exponential_jitter(multiplier=self.initial, max=self.maximum, jitter=self.initial)(
                state
            )
        )

    async def backoff(self, exc: BaseException, failures: int) -> int:
        """Re-raise `exc` unless another try is allowed; else wait and return failures + 1.

        Call it from the `except` block of a hand-written retry loop (one that must resume
        from where it stopped, so it cannot be replayed whole by `call`).
        """
        if not self.allows(exc, failures):
            raise exc
        delay = self.delay(exc, failures + 1)
        log_retry(delay, exc)
        await asyncio.sleep(delay)
        return failures + 1

    def allows(self, exc: BaseException, failures: int) -> bool:
        """True when `exc` is retryable and fewer than `retries` failures happened before it."""
        return is_retryable(exc) and failures < self.retries

    def retrying(self) -> AsyncRetrying:
        """A tenacity controller for `async for attempt in policy.retrying():` loops."""
        return AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.retries + 1),
            wait=self.wait,
            reraise=True,
            before_sleep=_log_retry,
        )

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` until it succeeds, fails for good, or tries run out."""
        async for attempt in self.retrying():
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def log_retry(delay: float, exc: BaseException | None) -> None:
    """Say (at -v, and on a progress line) that a retry comes, when, and why."""
    _log.info("retrying in %.0f s: %s", delay, exc)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log_retry(state.next_action.sleep if state.next_action else 0.0, exc)
