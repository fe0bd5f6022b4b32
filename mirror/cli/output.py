"""How commands print: text for people, JSON for programs, nothing when quiet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.oci.platform import Platform

if TYPE_CHECKING:
    from mirror.progress import RichProgress

__all__ = [
    "Options",
    "emit",
    "emit_report",
    "json_option",
    "options",
    "parse_platforms",
    "parse_size",
    "progress_display",
    "run",
    "wants_progress",
]

T = TypeVar("T")


@dataclass
class Options:
    """Global output options from the `mirror` group."""

    as_json: bool = False
    quiet: bool = False
    verbose: int = 0
    creds: tuple[str, ...] = field(default=(), repr=False)
    token_hosts: tuple[str, ...] = ()
    plain_http: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    concurrency: int = 16
    anonymous: bool = False
    azure_cloud: str | None = None
    retries: int = 5
    blob_cache: bool = True
    chunk_size: int = 16 * 1024 * 1024
    limits: Limits = DEFAULT_LIMITS


_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(ctx: click.Context, param: click.Parameter, value: str | int) -> int:
    """Click callback: `1048576`, `512KiB`, `16MiB`, `1GiB`, `1TiB` (also K, M, G, T, KB, MB)
    to bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", value)
    if not match or int(match.group(1)) <= 0:
        raise click.BadParameter(f"{value!r} is not a size like 16MiB", ctx, param)
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_platforms(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[Platform, ...]:
    """Click callback: `--platform OS/ARCH[/VARIANT]` values, a usage error when malformed."""
    try:
        return tuple(Platform.parse(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def wants_progress(*, quiet: bool, as_json: bool) -> bool:
    """Bars only for a person at a terminal: stderr is a TTY, not quiet, not JSON."""
    return not quiet and not as_json and sys.stderr.isatty()


@contextlib.contextmanager
def progress_display(*, wanted: bool = True) -> Iterator[RichProgress | None]:
    """Rich progress on stderr for a person at a terminal (None when piped, quiet, JSON, or
    not `wanted`); rich is imported only then."""
    opts = options()
    if not wanted or not wants_progress(quiet=opts.quiet, as_json=opts.as_json):
        yield None
        return
    from mirror.progress import RichProgress

    with RichProgress() as progress:
        yield progress


def options() -> Options:
    """The options of the running command, with a command's own `--json` folded in."""
    ctx = click.get_current_context()
    found = ctx.find_object(Options) or Options()
    if ctx.params.get("as_json"):
        found.as_json = True
    return found


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--json` to a subcommand (same as the global `mirror --json`)."""
    return click.option("--json", "as_json", is_flag=True, help="Write JSON instead of text.")(f)


def emit(data: Any, text: Callable[[], str] | str) -> None:
    """Print the data a command exists to print: JSON when asked, else the human text.
    `-q` never silences it (it silences progress, logs and reports)."""
    if options().as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    out = text() if callable(text) else text
    if out:
        click.echo(out)


def emit_report(data: Any, text: Callable[[], str] | str) -> None:
    """Print what a command did (JSON when asked); nothing in text when quiet."""
    if options().as_json or not options().quiet:
        emit(data, text)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine to completion."""
    return asyncio.run(coro)
