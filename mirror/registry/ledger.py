"""A registry's announced request budget, spent locally before each rationed request.

A registry such as Docker Hub counts each manifest GET when it arrives and says what is left
only in its reply, so requests in flight together all ask before the budget they spend is
counted. With a reserve to keep, mirror must never overdraw it: each rationed request takes
one from a local counter before it goes (refused once the counter is down to the reserve),
the first alone until the registry has said what its budget is, and each reply's announced
remaining corrects the counter downwards only (it can only be late: the requests in flight
were already taken), until the budget's window has passed, when it is taken as said.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mirror.errors import BudgetReserved
from mirror.registry.ratelimit import Budget

__all__ = ["BudgetLedger"]


class BudgetLedger:
    """The budget of one registry as this process spends it, keeping `reserve` unspent."""

    def __init__(self, registry: str, reserve: int, clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.reserve = reserve
        self._clock = clock
        #: requests still to spend as counted here (None: not announced yet)
        self.left: int | None = None
        #: when the announced window has passed and a reply's budget is taken as said
        self._renews_at: float | None = None
        #: set when the one request sent before the budget is known has its answer
        self._probe: asyncio.Event | None = None
        #: a reply came without a budget before any was announced: nothing to ration
        self._unannounced = False

    async def spend(self, what: str) -> bool:
        """Take one request from the budget before it is sent; True when it goes alone to
        learn the budget (the caller then calls `probed`). Raises BudgetReserved once the
        budget is down to the reserve."""
        while self.left is None and not self._unannounced:
            if self._probe is None:
                self._probe = asyncio.Event()
                return True
            await self._probe.wait()
        if self.left is None:
            return False
        if self.left <= self.reserve:
            raise BudgetReserved(
                f"{what}: {self.registry} has {self.left} requests of its rate limit left, "
                f"the reserve kept ({self.reserve}): deferred"
            )
        self.left -= 1
        return False

    def note(self, budget: Budget) -> None:
        """Take what a reply announced: lower only, unless the window has passed."""
        now = self._clock()
        renewed = self._renews_at is not None and now >= self._renews_at
        if self.left is None or renewed:
            self.left = budget.remaining
            wait = budget.wait()
            self._renews_at = now + wait if wait is not None else None
        else:
            self.left = min(self.left, budget.remaining)

    def probed(self, answered: bool) -> None:
        """The request sent to learn the budget is over (`answered`: a reply came, so a
        budget not announced by now is none); the requests waiting for it go on."""
        if answered and self.left is None:
            self._unannounced = True
        if self._probe is not None:
            self._probe.set()
            self._probe = None
