"""The writable layout of `mirror serve --writable`: pushes written through `Layout`'s own
crash-safe path (verified blob writes, `index.json` edits under its lock), sharing the
layout with a running `mirror sync`.

A `Layout` opened for writing holds the shared writers' lock until it is closed, so that
`layout gc` (exclusive) never deletes a blob a writer stored but has not named yet. A server
runs for months and must not keep gc out all that time: it holds a writing `Layout` (the
lease) only while pushes are in progress — from a write until `idle` seconds pass with no
write and no upload open (an upload no request used for `upload_idle` seconds is dropped:
its client is gone) — and lets it go between pushes. Uploads in progress are kept
under `.mirror/uploads/serve-<pid>/` (one folder per server, so two servers on one layout keep
apart; a folder whose server is gone is removed at start), which gc does not touch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from mirror.endpoint import BlobSource
from mirror.layout.store import Layout
from mirror.serve.answers import ApiError

__all__ = ["Upload", "WritableLayout", "append", "file_source"]

#: uploads open at once, at most
MAX_UPLOADS = 1000


@dataclass
class Upload:
    """An upload in progress: its repository, file and the bytes received so far."""

    name: str
    path: Path
    size: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: when a request last used it (the event loop's clock)
    touched: float = 0.0


class WritableLayout:
    """The layout pushes go to; see the module's docstring for how it shares the layout."""

    def __init__(self, path: Path, *, idle: float = 5.0, upload_idle: float = 60.0) -> None:
        self.path = path
        self.idle = idle
        #: an upload no request used for this long is dropped (its client is gone)
        self.upload_idle = upload_idle
        self._tasks: set[asyncio.Task[None]] = set()
        self._uploads_root = path / ".mirror" / "uploads"
        self._uploads_dir = self._uploads_root / f"serve-{os.getpid()}"
        self._uploads: dict[str, Upload] = {}
        self._lease: Layout | None = None
        self._busy = 0
        self._guard = asyncio.Lock()
        self._release: asyncio.TimerHandle | None = None

    async def prepare(self) -> None:
        """Make the layout when it does not exist yet; clear uploads a previous run left."""
        async with await Layout.open(self.path, create=True) as layout:
            await layout.prepare_writes()
        await asyncio.to_thread(self._clear_stale)
        await asyncio.to_thread(self._uploads_dir.mkdir, parents=True, exist_ok=True)

    def _clear_stale(self) -> None:
        """Remove the upload folders of servers that are no longer running (and this one's)."""
        if not self._uploads_root.is_dir():
            return
        for folder in self._uploads_root.iterdir():
            pid = folder.name.removeprefix("serve-")
            if folder.name.startswith("serve-") and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self._uploads_dir, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[Layout]:
        """The layout opened for writing (the writers' lock held) for one write."""
        async with self._guard:
            if self._release is not None:
                self._release.cancel()
                self._release = None
            if self._lease is None:
                self._lease = await Layout.open(self.path, create=True)
            self._busy += 1
        try:
            yield self._lease
        finally:
            self._busy -= 1
            self._schedule_release()

    def _schedule_release(self) -> None:
        """Look again in `idle` seconds whether the lease can go."""
        if self._busy == 0 and self._lease is not None:
            loop = asyncio.get_running_loop()
            if self._release is not None:
                self._release.cancel()
            self._release = loop.call_later(self.idle, self._start_let_go)

    def _start_let_go(self) -> None:
        task = asyncio.get_running_loop().create_task(self._let_go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _let_go(self) -> None:
        """Drop the uploads their clients left; let the lease go when nothing is in
        progress, else look again later."""
        now = asyncio.get_running_loop().time()
        for upload in list(self._uploads.values()):
            if now - upload.touched > self.upload_idle and not upload.lock.locked():
                await self.end_upload(upload)
        async with self._guard:
            self._release = None
            if self._busy == 0 and not self._uploads and self._lease is not None:
                lease, self._lease = self._lease, None
                await lease.aclose()
        if self._lease is not None:
            self._schedule_release()

    @property
    def holds_lock(self) -> bool:
        """True while the writers' lock is held (a push in progress, or just ended)."""
        return self._lease is not None

    async def close(self) -> None:
        """Let the lock go and drop the uploads in progress."""
        if self._release is not None:
            self._release.cancel()
        for task in list(self._tasks):
            task.cancel()
        async with self._guard:
            if self._lease is not None:
                await self._lease.aclose()
                self._lease = None
        await asyncio.to_thread(shutil.rmtree, self._uploads_dir, True)

    # -- uploads ------------------------------------------------------------------------

    async def start_upload(self, name: str) -> Upload:
        """A new upload session for repository `name`."""
        if len(self._uploads) >= MAX_UPLOADS:
            raise ApiError(429, "TOOMANYREQUESTS", "too many uploads in progress")
        key = uuid.uuid4().hex
        upload = Upload(name, self._uploads_dir / key, touched=asyncio.get_running_loop().time())
        await asyncio.to_thread(upload.path.touch, 0o600)
        self._uploads[key] = upload
        async with self.writing():  # the lease is held while an upload is open
            pass
        return upload

    def upload(self, name: str, key: str) -> Upload:
        """The upload `key` of repository `name` (404 BLOB_UPLOAD_UNKNOWN otherwise)."""
        upload = self._uploads.get(key)
        if upload is None or upload.name != name:
            raise ApiError(404, "BLOB_UPLOAD_UNKNOWN", "no such upload in progress")
        upload.touched = asyncio.get_running_loop().time()
        return upload

    def key_of(self, upload: Upload) -> str:
        """The id an upload is known by (its file's name)."""
        return upload.path.name

    async def end_upload(self, upload: Upload) -> None:
        """Forget an upload and remove its file."""
        self._uploads.pop(upload.path.name, None)
        await asyncio.to_thread(upload.path.unlink, True)
        self._schedule_release()


def _alive(pid: int) -> bool:
    """True when a process `pid` runs (a pid of another user's counts as running)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def append(upload: Upload, chunks: AsyncIterator[bytes], limit: int) -> None:
    """Append a request body to an upload's file (never past `limit` bytes in all)."""
    f = await asyncio.to_thread(open, upload.path, "ab")
    try:
        async for chunk in chunks:
            if upload.size + len(chunk) > limit:
                raise ApiError(400, "SIZE_INVALID", f"the blob is over {limit} bytes")
            await asyncio.to_thread(f.write, chunk)
            upload.size += len(chunk)
            upload.touched = asyncio.get_running_loop().time()
    finally:
        await asyncio.to_thread(f.close)


def file_source(path: Path) -> BlobSource:
    """A BlobSource reading the file at `path` from an offset."""

    async def read(offset: int) -> AsyncGenerator[bytes, None]:
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            position = offset
            while chunk := await asyncio.to_thread(os.pread, fd, 1024 * 1024, position):
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    return read
