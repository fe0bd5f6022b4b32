"""How commands print: text for people, JSON for programs, nothing when quiet.

asyncio is imported when a command's coroutine runs (`run`): help and usage errors, which
never get there, come back without it."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.oci.platform import Platform
from mirror.support.terminal import printable

if TYPE_CHECKING:
    import asyncio

    from mirror.progress import RichProgress

__all__ = [
    "Options",
    "Terminated",
    "counted",
    "emit",
    "emit_outcome",
    "emit_report",
    "json_option",
    "options",
    "parse_media_size",
    "parse_platforms",
    "parse_size",
    "progress_display",
    "run",
    "sigterm_ends_the_command",
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


_MEDIA_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_media_size(
    ctx: click.Context, param: click.Parameter, value: str | int | None
) -> int | None:
    """Click callback: a size as media are sold: `4.7GB` (GB = 10^9 bytes), `64MiB`, `4GiB`
    (binary with `i`), plain bytes; None when not given."""
    if value is None or isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kKmMgGtT])(i?))?[bB]?\s*", value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a size like 4.7GB or 64MiB", ctx, param)
    unit = (match.group(2) or "").lower()
    scale = _UNITS[unit] if match.group(3) else _MEDIA_UNITS[unit]
    size = int(float(match.group(1)) * scale)
    if size <= 0:
        raise click.BadParameter(f"{value!r} is not a size like 4.7GB or 64MiB", ctx, param)
    return size


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


def counted(number: int, noun: str) -> str:
    """`1 image`, `2 images`: a count and its noun (a plural in -s), singular for one."""
    return f"{number} {noun if number == 1 else noun + 's'}"


def emit(data: Any, text: Callable[[], str] | str) -> None:
    """Print the data a command exists to print: JSON when asked, else the human text.
    `-q` never silences it (it silences progress, logs and reports). `data` may be a function
    that makes it, called only for JSON (a sync's report of 100,000 images is 36 MB of it)."""
    if options().as_json:
        payload = data() if callable(data) else data
        click.echo(json.dumps(payload, indent=2, sort_keys=False))
        return
    out = text() if callable(text) else text
    if out:
        click.echo(printable(out))


def say(message: str) -> None:
    """One line on stderr (a problem, a failure, news), control characters escaped: it may
    quote what a registry sent."""
    click.echo(printable(" ".join(message.split())), err=True)


def emit_report(data: Any, text: Callable[[], str] | str) -> None:
    """Print what a command did (JSON when asked); nothing in text when quiet."""
    if options().as_json or not options().quiet:
        emit(data, text)


def emit_outcome(data: Any, text: Callable[[], str] | str, *, dry_run: bool) -> None:
    """Print what a command did (`emit_report`), or with `dry_run` what it would do: a dry
    run's plan is the data it exists to print, which `-q` never silences (`emit`)."""
    (emit if dry_run else emit_report)(data, text)


class Terminated(BaseException):
    """SIGTERM asked the command to end (what KeyboardInterrupt is to SIGINT): not an error of
    the work, so no `except Exception` in the library catches it."""


class _Sigterm:
    """SIGTERM in this process: the first one ends the command; any later one is ignored,
    so that the clean-up it started (staged files removed, locks let go) runs to its end."""

    received = False

    @classmethod
    def first(cls) -> bool:
        """True for the SIGTERM that ends the command, False for every one after it."""
        if cls.received:
            return False
        cls.received = True
        return True


@contextlib.contextmanager
def _on_sigterm(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """`handler` answers SIGTERM within; the one before is put back after, except once a
    SIGTERM came (then later ones are ignored until the process ends). Only the main thread
    can set signal handlers: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if _Sigterm.received:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    if _Sigterm.first():
        raise Terminated


@contextlib.contextmanager
def sigterm_ends_the_command() -> Iterator[None]:
    """Within, SIGTERM raises Terminated where the command is (as SIGINT raises
    KeyboardInterrupt); `run` turns it into a cancellation while a coroutine runs."""
    _Sigterm.received = False  # a new command (main may be called again in one process)
    in_main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if in_main else None
    try:
        with _on_sigterm(_raise_terminated):
            yield
    finally:  # the caller's handler back; after a SIGTERM the process is ending: ignore more
        if in_main and not _Sigterm.received:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


class _MainTask:
    """The task `run` runs a command's coroutine in, cancelled by SIGTERM in the loop's own
    thread (as asyncio.run cancels it on SIGINT) so that its clean-up runs as for Ctrl-C."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` in this task, unless a SIGTERM came before it could start."""
        import asyncio

        self.task = asyncio.current_task()
        self.loop = asyncio.get_running_loop()
        if _Sigterm.received:
            coro.close()
            raise asyncio.CancelledError
        return await coro

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """Cancel the task once (a later SIGTERM must not cut its clean-up short)."""
        if _Sigterm.first() and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine to completion; Terminated when SIGTERM stopped it (the
    coroutine was cancelled and its clean-up has run, worker threads finished)."""
    import asyncio

    main = _MainTask()
    with _on_sigterm(main.on_sigterm), asyncio.Runner() as runner:
        try:
            result = runner.run(main.run(coro))
        except BaseException:
            if _Sigterm.received:
                raise Terminated from None
            raise
    if _Sigterm.received:
        raise Terminated
    return result
