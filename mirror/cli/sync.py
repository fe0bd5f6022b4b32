"""`mirror sync CONFIG.toml`: many images, filters, incremental, sharded."""

from __future__ import annotations

import datetime
import json
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mirror.cli.context import registry_options
from mirror.cli.output import (
    Terminated,
    emit_outcome,
    json_option,
    options,
    progress_display,
    run,
    say,
)
from mirror.cli.policy import policy_option
from mirror.support.timestamps import parse_duration
from mirror.sync.report import Status, SyncReport

if TYPE_CHECKING:
    from mirror.sync.config import SyncConfig
    from mirror.sync.service import RunOutcome
    from mirror.trust.policy import Policy

#: the exit code of a sync that left images for later (a rate-limit reserve was reached)
EXIT_DEFERRED = 3

__all__ = ["sync_command"]


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", value)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise click.BadParameter(f"{value!r} is not K/N with 1 <= K <= N", ctx, param)
    return int(match.group(1)), int(match.group(2))


#: the shortest pause `--every` takes between runs
LEAST_INTERVAL = 1.0


def _interval(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is None:
        raise click.BadParameter(f"{value!r} is not a duration like 30s, 15m or 1h", ctx, param)
    if seconds < LEAST_INTERVAL:
        raise click.BadParameter(
            f"{value!r} is too short: at least {LEAST_INTERVAL:g}s (30s, 15m, 1h)", ctx, param
        )
    return seconds


def _address(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})", value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", ctx, param)
    return match.group(1).strip("[]") or "0.0.0.0", int(match.group(2))  # noqa: S104


def _admitted(admitted: dict[str, str]) -> str:
    """`  admitted by key SHA256:… (policy scope …)`, or nothing."""
    if not admitted:
        return ""
    return f"  admitted by {admitted['by']} (policy scope {admitted['scope']})"


def _text(report: SyncReport) -> str:
    """The report for people; why an image failed is said once, by its line on stderr; with
    -v, what admitted each image under a signature policy."""
    verbose = options().verbose > 0
    lines = [
        f"{i.status:<12} {i.source or '-'} -> {i.destination or '-'}"
        + (f"  {i.bytes} bytes" if i.status == "planned" else "")
        + (f"  ({i.error})" if i.error and i.status is not Status.FAILED else "")
        + (_admitted(i.admitted) if verbose else "")
        for i in report.images
    ]
    planned = [i for i in report.images if i.status == "planned"]
    if planned:
        lines.append(f"{sum(i.bytes for i in planned)} bytes to move at most")
    counts = report.counts()
    lines.append(
        ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do"
    )
    return "\n".join(lines)


@click.command("sync")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan; copy and delete nothing.")
@click.option("--shard", callback=_shard, metavar="K/N", help="Run only shard K of N.")
@click.option(
    "--every",
    callback=_interval,
    metavar="DURATION",
    help="Run again DURATION (30s, 15m, 1h; at least 1s) after each run ends, until SIGTERM "
    "or SIGINT; CONFIG is re-read before each run.",
)
@click.option(
    "--metrics-addr",
    callback=_address,
    metavar="HOST:PORT",
    help="With --every: serve Prometheus metrics at /metrics and liveness at /healthz.",
)
@click.option(
    "--verify-destination",
    is_flag=True,
    help="Compare every destination tag by a HEAD this run, whatever the last run recorded "
    "(by default a registry repository whose tag listing is unchanged is trusted up to "
    "verify_destination_every).",
)
@policy_option
@json_option
def sync_command(
    config: Path,
    dry_run: bool,
    shard: tuple[int, int] | None,
    every: float | None,
    metrics_addr: tuple[str, int] | None,
    verify_destination: bool,
    policy: Policy | None,
    as_json: bool,
) -> None:
    """Mirror the images CONFIG (TOML, see docs/sync.md) describes; exit 1 if any failed or
    was refused. --policy admits only signed images, over the configuration's default policy.
    With --every, keep mirroring on that interval (exit 0 when stopped by a signal)."""
    if metrics_addr is not None and every is None:
        raise click.UsageError("--metrics-addr serves a long-running sync: give --every too")
    if every is not None and dry_run:
        raise click.UsageError("--every and --dry-run do not go together")
    if every is not None and verify_destination:
        raise click.UsageError(
            "--verify-destination is for one run; with --every, set verify_destination_every"
        )
    # imported once the arguments are understood: help and usage errors load no HTTP stack
    from mirror.sync.config import load_config
    from mirror.sync.run import run_sync

    parsed = load_config(config)
    if every is not None:
        run(_service(config, parsed, every, metrics_addr, shard, policy))
        return
    with progress_display(wanted=not dry_run) as progress:
        report = run(
            run_sync(
                parsed,
                options=registry_options(parsed.hosts()),
                dry_run=dry_run,
                shard=shard,
                progress=progress,
                verify_destination=verify_destination,
                policy=policy,
            )
        )
    emit_outcome(report.to_json, lambda: _text(report), dry_run=dry_run)
    _say_failures(report)
    if report.failed or report.refused:
        sys.exit(1)
    if report.deferred:
        sys.exit(EXIT_DEFERRED)


def _say_failures(report: SyncReport) -> None:
    """A line on stderr for each image that failed."""
    for failure in report.failed:
        say(f"mirror: failed: {failure.source} -> {failure.destination or '-'}: {failure.error}")
    for refusal in report.refused:
        say(f"mirror: refused: {refusal.source} -> {refusal.destination}: {refusal.error}")


def _say_run(outcome: RunOutcome) -> None:
    """One line per run (a JSON object per line with --json); failures on stderr."""
    finished = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if options().as_json:
        line = {"run": outcome.number, "finished": finished, "seconds": round(outcome.seconds, 3)}
        if outcome.error:
            line["error"] = outcome.error
        click.echo(json.dumps({**line, **outcome.report.to_json()}))
    elif not options().quiet:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.report.counts().items()))
        click.echo(
            f"{finished} run {outcome.number}: {counts or 'nothing to do'} "
            f"in {outcome.seconds:.1f} s"
        )
    _say_failures(outcome.report)
    if outcome.error:
        say(f"mirror: run {outcome.number} stopped: {outcome.error}")


async def _service(
    path: Path,
    first: SyncConfig,
    every: float,
    metrics_addr: tuple[str, int] | None,
    shard: tuple[int, int] | None,
    policy: Policy | None,
) -> None:
    """The sync on an interval: the first SIGTERM/SIGINT lets the images in flight finish
    (exit 0), a second one stops at once as that signal ends any command (Terminated or
    KeyboardInterrupt); nothing half-written is ever visible either way."""
    # imported here: a one-off sync need not load prometheus_client and aiohttp's server
    import asyncio

    from mirror.sync.metrics import SyncMetrics
    from mirror.sync.service import ConfigWatcher, Health, run_every, serve_metrics

    stop = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    #: the signal that stopped the service at once (the second one)
    at_once: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if at_once:
            return  # being cancelled already: its clean-up must not be cut short
        if stop.is_set() and main is not None:
            at_once.append(signum)
            main.cancel()
            return
        click.echo("mirror: stopping: finishing the images in flight", err=True)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    metrics, health = SyncMetrics(), Health(every)
    runner = None
    if metrics_addr is not None:
        runner = await serve_metrics(*metrics_addr, metrics, health)
    try:
        await run_every(
            ConfigWatcher(path, first, policy.path if policy is not None else None),
            every,
            options_for_config=lambda config: registry_options(config.hosts()),
            stop=stop,
            on_run=_say_run,
            on_config_problem=lambda problem: say(f"mirror: {problem}"),
            metrics=metrics,
            health=health,
            shard=shard,
        )
    except asyncio.CancelledError:
        if not at_once:
            raise
        # the command ends as any other does on that signal: one line, 143 or 130
        raise (Terminated() if at_once[0] == signal.SIGTERM else KeyboardInterrupt()) from None
    finally:
        if runner is not None:
            await runner.cleanup()
