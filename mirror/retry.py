"""The one retry helper: which errors are retried, how long to wait, how often, and how an
operation is tried again.

Retried: errors whose `retryable` is true (408, 429, 5xx, TOOMANYREQUESTS/UNAVAILABLE codes,
connection resets and timeouts), from a registry or its token service. Waits grow
exponentially with jitter; a `Retry-After` wins, capped so a hostile value cannot stall a run.

Whether an operation may be sent again is its own property, said when it is run (`Repeat`):

- `WHOLE`: a read, or a write that is the same done twice (a manifest PUT by digest): sent
  again as it is;
- `CHECKED`: a state-changing step, sent again as a unit that first checks whether the try
  whose answer was lost did it (`Attempt.after_lost_answer`): a DELETE then answered 404 is
  done, an upload's commit HEADs the blob first.

A streamed transfer cannot be sent again as it is: it resumes from the offset it reached,
counting its failures with `Attempts`. Tries never multiply: a `run` inside another run's
try makes one try, whose failure is the outer try's.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from mirror.errors import MirrorError, RateLimited

__all__ = [
    "DEFAULT_RETRIES",
    "Attempt",
    "Attempts",
    "Repeat",
    "RetryPolicy",
    "is_retryable",
    "parse_retry_after",
]

T = TypeVar("T")
DEFAULT_RETRIES = 5
_log = logging.getLogger("mirror.retry")


class Repeat(enum.Enum):
    """How an operation may be sent again after a retryable failure."""

    #: a read, or a write that is the same done twice: sent again as it is
    WHOLE = "whole"
    #: a state-changing step: sent again as a unit that checks first what a try whose
    #: answer was lost did (`Attempt.after_lost_answer`)
    CHECKED = "checked"


@dataclass
class Attempt:
    """One try of an operation."""

    #: 1 for the first try
    number: int = 1
    #: an earlier try's request went out and its answer was lost (cut, or a 5xx): what it
    #: asked may have happened
    after_lost_answer: bool = False
    #: this try's request went out and its answer was lost (the transport says so)
    answer_lost: bool = False


def is_retryable(exc: BaseException) -> bool:
    """True for errors worth another try, read from their `retryable` attribute only."""
    return isinstance(exc, MirrorError) and exc.retryable


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value) if len(value) <= 18 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait between tries."""

    retries: int = DEFAULT_RETRIES
    initial: float = 0.2
    maximum: float = 10.0
    retry_after_cap: float = 60.0

    def delay(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based) ended with `exc`: the
        server's Retry-After (capped), else tenacity's exponential backoff with jitter."""
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.retry_after_cap)
        state = RetryCallState(_RETRYING, None, (), {})
        state.attempt_number = attempt
        return float(self._backoff(state))

    @property
    def _backoff(self) -> wait_exponential_jitter:
        return wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.initial
        )

    def _wait(self, state: RetryCallState) -> float:
        """tenacity's wait: `delay` for the try that just failed."""
        exc = state.outcome.exception() if state.outcome else None
        return self.delay(exc, state.attempt_number)

    def allows(self, exc: BaseException, failures: int) -> bool:
        """True when `exc` is retryable and fewer than `retries` failures happened before it."""
        return is_retryable(exc) and failures < self.retries

    def attempts(self) -> Attempts:
        """A count of tries for a loop that resumes where it stopped (a streamed transfer)."""
        return Attempts(self)

    async def run(self, operation: Callable[[Attempt], Awaitable[T]], repeat: Repeat) -> T:
        """Run `operation` until it succeeds, fails for good, or its tries run out.

        `repeat` is how it may be sent again; a `CHECKED` operation reads
        `after_lost_answer` of the try it is given. Inside another run's try it is tried
        once, with that try: the outer run counts the failure and decides.
        """
        outer = _trying.get()
        task = asyncio.current_task()
        if outer is not None and outer[0] is task:
            return await operation(outer[1])
        current = Attempt()
        # the first try runs bare: tenacity's machinery (a few objects in reference cycles
        # per call) is made only for an operation that failed and may be tried again
        token = _trying.set((task, current))
        try:
            return await operation(current)
        except BaseException as exc:
            if not (self.retries > 0 and is_retryable(exc)):
                raise
            first_failure: list[BaseException] = [exc]
        finally:
            _trying.reset(token)
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.retries + 1),
            wait=self._wait,
            reraise=True,
            before_sleep=_log_retry,
        )
        async for attempt in retrying:
            number = attempt.retry_state.attempt_number
            if number > current.number:  # the try before failed: say if its answer was lost
                lost = current.after_lost_answer or current.answer_lost
                current = Attempt(number, after_lost_answer=lost)
            with attempt:
                if first_failure:  # tenacity's first try is the one made above
                    raise first_failure.pop()
                token = _trying.set((task, current))
                try:
                    return await operation(current)
                finally:
                    _trying.reset(token)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """`run(operation, Repeat.WHOLE)` for an operation that needs no `Attempt`."""
        return await self.run(lambda _: operation(), Repeat.WHOLE)


class Attempts:
    """The tries of one operation under a policy: failures in a row counted, waits between.

    Call `failed(exc)` from the `except` block of a loop that resumes where it stopped;
    `progressed()` after a step went through.
    """

    def __init__(self, policy: RetryPolicy, failures: int = 0) -> None:
        self.policy = policy
        #: failures in a row so far
        self.failures = failures
        #: the try under way
        self.current = Attempt(failures + 1)

    async def failed(self, exc: BaseException) -> None:
        """Re-raise `exc` unless another try is allowed; else wait, and begin the next try."""
        if not self.policy.allows(exc, self.failures):
            raise exc
        self.failures += 1
        delay = self.policy.delay(exc, self.failures)
        log_retry(delay, exc)
        await asyncio.sleep(delay)
        lost = self.current.after_lost_answer or self.current.answer_lost
        self.current = Attempt(self.current.number + 1, after_lost_answer=lost)

    def progressed(self) -> None:
        """A step went through: failures are counted in a row from here."""
        self.failures = 0


#: the controller a backoff's state belongs to (tenacity's waits read only the try's number)
_RETRYING = AsyncRetrying()

#: the try of the `RetryPolicy.run` under way in this task, if any
#: (a task started inside it inherits the variable, not the try: the task is compared)
_trying: contextvars.ContextVar[tuple[asyncio.Task[Any] | None, Attempt] | None] = (
    contextvars.ContextVar("mirror_retry_trying", default=None)
)


def log_retry(delay: float, exc: BaseException | None) -> None:
    """Say (at -v, and on a progress line) that a retry comes, when, and why: a wait under
    ten seconds to the tenth (the first is a fifth of a second, never "0 s")."""
    if delay <= 0:
        _log.info("retrying now: %s", exc)
    elif delay < 10:
        _log.info("retrying in %.1f s: %s", max(delay, 0.1), exc)
    else:
        _log.info("retrying in %.0f s: %s", delay, exc)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log_retry(state.next_action.sleep if state.next_action else 0.0, exc)
