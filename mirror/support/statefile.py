"""mirror's own state files (under `$XDG_STATE_HOME/mirror/`), one JSON file per registry host:
read never trusted (a file that is missing, unreadable, too large or damaged counts as empty,
with one warning), and replaced under the file's lock with what the writer merges into what is
on disk (processes side by side lose nothing)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from mirror.errors import MirrorError
from mirror.support import jsonutil
from mirror.support.fsutil import FileLock, read_capped, real_dir, write_atomic

__all__ = ["host_file", "read_state", "replace_merged"]

T = TypeVar("T")


def read_state(
    path: Path,
    limit: int,
    parse: Callable[[Any], T],
    empty: Callable[[], T],
    *,
    what: str,
    instead: str,
    log: logging.Logger,
) -> T:
    """`parse` of the JSON in `path` (at most `limit` bytes); `empty()` when there is none or
    it cannot be used (`parse` raises ValueError for what it refuses), warned as `what` that
    is unreadable or damaged, and what happens `instead`."""
    try:
        raw = read_capped(path, limit)
    except FileNotFoundError:
        return empty()
    except (OSError, MirrorError) as exc:
        log.warning("%s %s unreadable (%s): %s", what, path, exc, instead)
        return empty()
    try:
        return parse(jsonutil.loads(raw))
    except ValueError as exc:
        log.warning("%s %s damaged (%s): %s", what, path, exc, instead)
        return empty()


def host_file(directory: Path, host: str) -> Path:
    """The state file of one registry host in `directory`."""
    return directory / f"{quote(host, safe='')}.json"


async def replace_merged(
    directory: Path, hosts: Iterable[str], merged: Callable[[str], bytes]
) -> None:
    """For each host, under its file's lock, replace the file with `merged(host)` (which reads
    what is on disk and merges into it), atomically; the folder made first, never a link."""
    await asyncio.to_thread(directory.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(real_dir, directory, create=True)
    for host in sorted(hosts):
        path = host_file(directory, host)
        async with FileLock(path.with_suffix(".lock")).hold():
            data = await asyncio.to_thread(merged, host)
            await asyncio.to_thread(write_atomic, path, data, directory)
