"""A sync that runs on an interval (`mirror sync CONFIG --every 15m`), as regsync's server
and dregsy do: run, sleep, re-read the configuration, run again — until told to stop.

    ConfigWatcher   the configuration file re-read before each run; a broken edit is reported
                    once and the last good configuration kept
    Health          "the runs keep their schedule" (`/healthz`): the last run finished within
                    two intervals, or the first is running within one
    serve_metrics   `/metrics` (Prometheus text, from SyncMetrics) and `/healthz` over HTTP
    run_every       the loop; a set `stop` event lets the images in flight finish, starts
                    nothing more and returns
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mirror.errors import MirrorError
from mirror.registry import RegistryOptions
from mirror.sync.config import SyncConfig, load_config
from mirror.sync.metrics import SyncMetrics
from mirror.sync.report import SyncReport
from mirror.sync.run import run_sync

if TYPE_CHECKING:
    pass

__all__ = ["ConfigWatcher", "Health", "RunOutcome", "run_every", "serve_metrics"]


@dataclass(frozen=True)
class RunOutcome:
    """One run of the service: its number (from 1), its report, how long it took; `error`
    when the run stopped as a whole (e.g. `keep_going = false` and an image failed)."""

    number: int
    report: SyncReport
    seconds: float
    error: str = ""


class ConfigWatcher:
    """The configuration, read again before every run with the signature policies it names
    (and `policy_path`, a `--policy` given to the service) and the keys those name, so that
    a key taken out of a policy is out from the next run on. A file that became unusable
    keeps the last good configuration, said once for each new problem."""

    def __init__(self, path: Path, first: SyncConfig, policy_path: str | None = None) -> None:
        self.path = path
        self.config = first
        self.policy_path = policy_path
        self._problem: str | None = None

    def _load(self) -> SyncConfig:
        config = load_config(self.path)
        if self.policy_path is not None:
            from mirror.trust.policy import load_policy  # cryptography only with a policy

            config = replace(config, policy=load_policy(self.policy_path))
        return config

    def current(self) -> tuple[SyncConfig, str | None]:
        """The configuration to run now, and the problem with the files when they became
        unusable (said once per problem; the last good configuration is kept)."""
        try:
            self.config = self._load()
        except MirrorError as exc:
            problem = f"{exc}; keeping the last good configuration"
            if problem == self._problem:
                return self.config, None
            self._problem = problem
            return self.config, problem
        self._problem = None
        return self.config, None


class Health:
    """Healthy while the runs keep their schedule, each run given one interval: the last run
    finished within two intervals (the pause, then the next run); before the first run ends
    (it starts at once), within one interval of the start."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._finished: float | None = None

    def ran(self) -> None:
        """A run just finished."""
        self._finished = self._clock()

    def healthy(self) -> bool:
        """True while the service is on schedule."""
        if self._finished is None:
            return self._clock() - self._started <= self.interval
        return self._clock() - self._finished <= 2 * self.interval

    def describe(self) -> str:
        """One line for `/healthz`."""
        if self._finished is None:
            ago = self._clock() - self._started
            said = f"no run has finished yet; the first started {ago:.0f} s ago"
        else:
            said = f"last run finished {self._clock() - self._finished:.0f} s ago"
        return f"{said}; the interval is {self.interval:g} s\n"


async def serve_metrics(
    host: str, port: int, metrics: SyncMetrics, health: Health
) -> web.AppRunner:
    """Serve `/metrics` and `/healthz` on host:port until the returned runner is cleaned up."""

    async def exposition(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=200 if health.healthy() else 503, text=health.describe())

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise MirrorError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    return runner


async def run_every(
    watcher: ConfigWatcher,
    interval: float,
    *,
    options_for_config: Callable[[SyncConfig], RegistryOptions],
    stop: asyncio.Event,
    on_run: Callable[[RunOutcome], None],
    on_config_problem: Callable[[str], None],
    metrics: SyncMetrics | None = None,
    health: Health | None = None,
    shard: tuple[int, int] | None = None,
) -> int:
    """Run the watched configuration every `interval` seconds (the pause counts from the end
    of a run) until `stop` is set; the number of runs made."""
    number = 0
    while not stop.is_set():
        config, problem = watcher.current()
        if problem is not None:
            on_config_problem(problem)
            if metrics is not None:
                metrics.config_errors.inc()
        options = options_for_config(config)
        if metrics is not None:
            options = replace(options, on_response=metrics.observe_response)
        number += 1
        started = time.monotonic()
        error = ""
        try:
            report = await run_sync(config, options=options, shard=shard, stop=stop)
        except MirrorError as exc:
            report, error = SyncReport(), str(exc)
        outcome = RunOutcome(number, report, time.monotonic() - started, error)
        if metrics is not None:
            metrics.record_run(
                report, (job.name for job in config.jobs), outcome.seconds, failed=bool(error)
            )
        if health is not None:
            health.ran()
        on_run(outcome)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    return number
