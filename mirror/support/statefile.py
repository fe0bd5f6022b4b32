"""mirror's own state files (under `$XDG_STATE_HOME/mirror/`) read as JSON, never trusted: a
file that is missing, unreadable, too large or damaged counts as empty, with one warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mirror.errors import MirrorError
from mirror.support import jsonutil
from mirror.support.fsutil import read_capped

__all__ = ["read_state"]

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
