"""`mirror sync CONFIG.toml`: many images, filters, incremental, sharded."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from mirror.cli.context import registry_options
from mirror.cli.output import emit_report, json_option, progress_display, run
from mirror.sync.config import load_config
from mirror.sync.report import SyncReport
from mirror.sync.run import run_sync

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


def _text(report: SyncReport) -> str:
    lines = [
        f"{i.status:<12} {i.source or '-'} -> {i.destination or '-'}"
        + (f"  {i.bytes} bytes" if i.status == "planned" else "")
        + (f"  ({i.error})" if i.error else "")
        for i in report.images
    ]
    planned = [i for i in report.images if i.status == "planned"]
    if planned:
        lines.append(f"{sum(i.bytes for i in planned)} bytes to move at most")
    counts = report.to_json()["summary"]
    lines.append(
        ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do"
    )
    return "\n".join(lines)


@click.command("sync")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan; copy and delete nothing.")
@click.option("--shard", callback=_shard, metavar="K/N", help="Run only shard K of N.")
@json_option
def sync_command(config: Path, dry_run: bool, shard: tuple[int, int] | None, as_json: bool) -> None:
    """Mirror the images CONFIG (TOML, see docs/sync.md) describes; exit 1 if any failed."""
    parsed = load_config(config)
    with progress_display(wanted=not dry_run) as progress:
        report = run(
            run_sync(
                parsed,
                options=registry_options(parsed.hosts()),
                dry_run=dry_run,
                shard=shard,
                progress=progress,
            )
        )
    emit_report(report.to_json(), lambda: _text(report))
    for failure in report.failed:
        click.echo(
            f"mirror: failed: {failure.source} -> {failure.destination or '-'}: {failure.error}",
            err=True,
        )
    if report.failed:
        sys.exit(1)
    if report.deferred:
        sys.exit(EXIT_DEFERRED)
