"""`mirror layout ls|verify|gc PATH`: look after an OCI image layout on disk.

`mirror.layout` is imported when a command runs: help and usage errors come back at once."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.output import (
    counted,
    emit,
    emit_outcome,
    emit_report,
    json_option,
    options,
    run,
    say,
)

if TYPE_CHECKING:
    from mirror.layout import GcReport, LayoutImage, Problem

__all__ = ["layout_group", "report_problems"]


@click.group("layout")
def layout_group() -> None:
    """Inspect, check and clean OCI image layouts."""


@layout_group.command("ls")
@click.argument("path", type=click.Path(file_okay=False))
@json_option
def ls_command(path: str, as_json: bool) -> None:
    """List the images in the layout at PATH."""
    from mirror.layout import Layout

    async def work() -> list[LayoutImage]:
        async with await Layout.open(path) as layout:
            return await layout.images()

    images = run(work())
    rows = [
        {
            "name": i.name,
            "digest": str(i.descriptor.digest),
            "mediaType": i.descriptor.media_type,
            "size": i.descriptor.size,
        }
        for i in images
    ]
    emit(rows, lambda: _table(rows))


def report_problems(problems: list[Problem], what: str) -> None:
    """Print verification problems (one line each, or JSON) and exit 1 if there are any."""
    if options().as_json:
        rows = [{"kind": str(p.kind), "subject": p.subject, "message": p.message} for p in problems]
        emit({"ok": not problems, "problems": rows}, "")
    else:
        for problem in problems:
            say(f"mirror: problem: {problem.message}")
        if not problems:
            emit_report(None, f"{what}: ok")
    if problems:
        sys.exit(1)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no images)"
    width = max(len(r["name"] or "<none>") for r in rows)
    return "\n".join(
        f"{(r['name'] or '<none>'):<{width}}  {r['digest']}  {r['size']:>8}  {r['mediaType']}"
        for r in rows
    )


@layout_group.command("verify")
@click.argument("path", type=click.Path(file_okay=False))
@click.option(
    "--strict",
    is_flag=True,
    help="Also check every document against what the OCI image spec requires.",
)
@json_option
def verify_command(path: str, strict: bool, as_json: bool) -> None:
    """Re-hash every blob in PATH and check every referenced blob is there; exit 1 on problems."""
    from mirror.layout import Layout, verify

    async def work() -> list[Problem]:
        async with await Layout.open(path) as layout:
            return await verify(layout, strict=strict)

    report_problems(run(work()), path)


@layout_group.command("gc")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@json_option
def gc_command(path: str, dry_run: bool, as_json: bool) -> None:
    """Delete blobs no image in PATH reaches, and stale temporary files."""
    from mirror.layout import Layout, gc

    async def work() -> GcReport:
        async with await Layout.open(path) as layout:
            return await gc(layout, dry_run=dry_run)

    report = run(work())
    verb = "would remove" if dry_run else "removed"
    emit_outcome(
        {
            "dryRun": dry_run,
            "removed": [str(d) for d in report.removed],
            "freedBytes": report.freed_bytes,
            "tempFiles": report.temp_files,
        },
        f"{verb} {counted(len(report.removed), 'blob')} ({counted(report.freed_bytes, 'byte')})"
        f" and {counted(report.temp_files, 'temporary file')}",
        dry_run=dry_run,
    )
