"""What every archive being written shares: how a blob's bytes are received (verified,
resumed), and what it answers of what it holds — nothing was there before this copy. It is a
destination only: nothing can be read back or removed until the file is finished."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

from mirror.endpoint import BlobSource, Referrers, StoredBlobs
from mirror.errors import SizeMismatch
from mirror.oci.digest import Digest, DigestHasher, check_content
from mirror.oci.model import Descriptor
from mirror.retry import RetryPolicy

__all__ = ["Staged", "WriteOnly", "receive", "written"]


async def receive(
    desc: Descriptor, source: BlobSource, write: Callable[[bytes], None], retry: RetryPolicy
) -> None:
    """Hand the blob's bytes to `write` (run in a worker thread), hashed as they come; a
    failed stream is re-opened where it stopped, so no byte is written twice; ContentError
    when the bytes are not the blob's."""
    hasher, attempts = DigestHasher(desc.digest.algorithm), retry.attempts()
    while True:
        try:
            async for chunk in source(hasher.size):
                if hasher.size + len(chunk) > desc.size:
                    raise SizeMismatch(f"blob {desc.digest}: more than {desc.size} bytes")
                await asyncio.to_thread(write, chunk)
                hasher.update(chunk)
            break
        except Exception as exc:
            await attempts.failed(exc)
    check_content(hasher, desc.digest, desc.size, "blob")


class WriteOnly(StoredBlobs):
    """What an archive being written answers of what it holds (it is a destination only: a
    copy cannot read from it, and mypy says so); `where` names it in errors."""

    where: str

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """A new archive holds nothing before this copy."""
        return None

    async def referrers(self, subject: Digest) -> Referrers:
        """None: a new archive holds nothing before this copy (its listings are written by
        this copy and not read back)."""
        return Referrers()


class Staged(Protocol):
    """An archive written under a temporary name and renamed into place when finished."""

    async def start(self) -> None:
        """Open the temporary file."""
        ...

    async def finish(self) -> None:
        """Complete the archive and rename it into place."""
        ...

    async def abort(self) -> None:
        """Remove what was staged."""
        ...


S = TypeVar("S", bound=Staged)


@contextlib.asynccontextmanager
async def written(writer: S) -> AsyncIterator[S]:
    """The writer started; finished when the block succeeds; aborted (what it staged
    removed) when the block or the finishing fails or is cancelled."""
    await writer.start()
    try:
        yield writer
        await writer.finish()
    except BaseException:
        await writer.abort()
        raise
