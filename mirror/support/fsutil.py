"""Crash-safe file primitives: atomic replace with fsync, cross-process file locks, and opens
that never follow a symbolic link nor touch anything but a regular file.

Layouts come from elsewhere and are hostile: every file of one is opened with `O_NOFOLLOW`
(new files also `O_EXCL`) and checked with `fstat` before use, and its directories are
checked not to be links, so nothing mirror reads, writes or deletes lies outside the layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from mirror.errors import LayoutError

__all__ = [
    "FileLock",
    "create_new",
    "fsync_dir",
    "open_locked",
    "open_regular",
    "read_capped",
    "real_dir",
    "regular_size",
    "temp_name",
    "try_locked",
    "write_atomic",
]

_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def _refuse(path: Path | str, exc: OSError) -> LayoutError:
    if exc.errno == errno.ELOOP:
        return LayoutError(f"{path} is a symbolic link: mirror does not follow links in a layout")
    return LayoutError(f"cannot open {path}: {exc.strerror}")


def _checked(fd: int, path: Path | str) -> int:
    """`fd` if it is a regular file (closed and refused otherwise)."""
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise LayoutError(f"{path} is not a regular file")
    return fd


def open_regular(path: Path | str, flags: int = os.O_RDONLY) -> int:
    """Open an existing regular file without following a link; LayoutError for anything else.

    FileNotFoundError passes through. A FIFO or device is refused without blocking on it.
    """
    try:
        fd = os.open(path, flags | _NO_FOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _refuse(path, exc) from None
    _checked(fd, path)
    os.set_blocking(fd, True)
    return fd


def create_new(path: Path | str, mode: int = 0o644) -> int:
    """Create a file that must not exist yet (O_EXCL, never through a link); write-only fd."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, mode)
    except FileExistsError:
        raise
    except OSError as exc:
        raise _refuse(path, exc) from None


def _open_or_create(path: Path) -> int:
    """Open a regular file read-write, creating it exclusively when it does not exist."""
    while True:
        try:
            return open_regular(path, os.O_RDWR)
        except FileNotFoundError:
            pass
        try:
            return _checked(
                os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o644), path
            )
        except FileExistsError:
            continue  # another process made it between our two opens: open theirs
        except OSError as exc:
            raise _refuse(path, exc) from None


def regular_size(path: Path | str) -> int | None:
    """The size of a regular file at `path` (not through a link); None when it is absent or
    anything else (a link, a directory, a FIFO, a device)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def read_capped(path: Path | str, limit: int) -> bytes:
    """A regular file's bytes, refused (LayoutError) when over `limit`; never through a link.

    FileNotFoundError passes through.
    """
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise LayoutError(f"{path} is {size} bytes, over the {limit} byte limit")
        with os.fdopen(fd, "rb", closefd=False) as f:
            # a read asks for its whole size in memory at once: ask for what the file holds
            want = size + 1
            data = f.read(want)
            if len(data) == want:  # it grew while read: on to the limit
                data += f.read(limit + 1 - want)
        if len(data) > limit:
            raise LayoutError(f"{path} grew past the {limit} byte limit while read")
        return data
    finally:
        os.close(fd)


def real_dir(path: Path, *, create: bool = False) -> None:
    """Check that `path` is a directory and not a link (making it first with `create`)."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        if create:
            raise
        return
    if stat.S_ISLNK(mode):
        raise LayoutError(f"{path} is a symbolic link: mirror does not follow links in a layout")
    if not stat.S_ISDIR(mode):
        raise LayoutError(f"{path} is not a directory")


async def open_locked(path: Path, *, shared: bool = False) -> int:
    """Open (creating) the regular file `path`, never through a link, and wait for an flock
    on it; return the descriptor.

    Polls a non-blocking flock, so a cancelled waiter never ends up holding the lock.
    """
    fd = _open_or_create(path)
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


def try_locked(path: Path) -> int | None:
    """An exclusive flock on the regular file `path` (created when absent) if nobody holds
    one now: the descriptor to close, or None at once when the file is locked."""
    fd = _open_or_create(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


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
        with os.fdopen(create_new(tmp), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def rewrite_in_place(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` over a small file's first bytes where they are, creating it (`mode`):
    no temporary file, no rename, no fsync, for a checkpoint written often that only saves
    work (on ext4 a rename over a file forces its data out, milliseconds each). Data shorter
    than the file is padded with spaces to its length (JSON ignores them). A reader sees a
    whole record, or one a kill in the middle of a multi-page write or a power cut damaged,
    which it must take as none. Never follows a link; anything but a regular file is refused.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | _NO_FOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        raise _refuse(path, exc) from None
    _checked(fd, path)
    try:
        view = memoryview(data.ljust(os.fstat(fd).st_size, b" "))
        offset = 0
        while offset < len(view):
            offset += os.pwrite(fd, view[offset:], offset)
    finally:
        os.close(fd)


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
