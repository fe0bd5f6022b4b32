"""Crash-safe file primitives: atomic replace with fsync, and cross-process file locks."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["FileLock", "fsync_dir", "open_locked", "temp_name", "write_atomic"]


async def open_locked(path: Path, *, shared: bool = False) -> int:
    """Open (creating) `path` and wait for an flock on it; return the descriptor.

    Polls a non-blocking flock, so a cancelled waiter never ends up holding the lock.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    delay = 0.001
    try:
        while True:
            try:
                fcntl.flock(fd, mode)
                return fd
            except BlockingIOError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
    except BaseException:
        os.close(fd)
        raise


_TOKEN = secrets.token_hex(6)  # drawn once per process start; the pid tells forks apart
_SERIAL = itertools.count()


def temp_name(prefix: str) -> str:
    """A fresh, unguessable file name starting with `prefix`: the pid, a random token and a
    serial number (no fresh randomness per name)."""
    return f"{prefix}-{os.getpid()}-{_TOKEN}{next(_SERIAL):x}"


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a part.

    The bytes go to a temporary file in `tmp_dir` (same file system), are fsynced, renamed
    over `path`, and the directory is fsynced. On failure the temporary file is removed.
    """
    tmp = tmp_dir / temp_name(path.name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


class FileLock:
    """An fcntl lock on a file that is never deleted; shared or exclusive, across processes.

    Acquired by polling with a non-blocking flock so that a cancelled waiter never leaks the
    lock. Each acquisition opens its own descriptor, so two holders in one process exclude
    each other just like two processes do.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.asynccontextmanager
    async def hold(self, *, shared: bool = False) -> AsyncIterator[None]:
        """Hold the lock for the body of an `async with`."""
        fd = await self.acquire(shared=shared)
        try:
            yield
        finally:
            self.release(fd)

    async def acquire(self, *, shared: bool = False) -> int:
        """Wait for the lock and return the descriptor to give back to `release`."""
        return await open_locked(self.path, shared=shared)

    @staticmethod
    def release(fd: int) -> None:
        """Give the lock back (closing the descriptor releases it)."""
        os.close(fd)
