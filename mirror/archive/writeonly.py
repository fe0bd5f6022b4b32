"""What every archive being written shares: how a blob's bytes are received (verified,
resumed), and what it answers to a read — nothing was there before this copy, and nothing
can be read back or removed until the file is finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from mirror.endpoint import BlobSource, Referrers
from mirror.errors import SizeMismatch, UnsupportedOperation
from mirror.oci.digest import Digest, DigestHasher, check_content
from mirror.oci.model import Descriptor, ManifestLike
from mirror.retry import RetryPolicy

__all__ = ["WriteOnly", "receive"]


async def receive(
    desc: Descriptor, source: BlobSource, write: Callable[[bytes], None], retry: RetryPolicy
) -> None:
    """Hand the blob's bytes to `write` (run in a worker thread), hashed as they come; a
    failed stream is re-opened where it stopped, so no byte is written twice; ContentError
    when the bytes are not the blob's."""
    hasher, failures = DigestHasher(desc.digest.algorithm), 0
    while True:
        try:
            async for chunk in source(hasher.size):
                if hasher.size + len(chunk) > desc.size:
                    raise SizeMismatch(f"blob {desc.digest}: more than {desc.size} bytes")
                await asyncio.to_thread(write, chunk)
                hasher.update(chunk)
            break
        except Exception as exc:
            failures = await retry.backoff(exc, failures)
    check_content(hasher, desc.digest, desc.size, "blob")


class WriteOnly:
    """The read half of a write-only archive endpoint; `label` names it in errors."""

    where: str

    def _refused(self) -> UnsupportedOperation:
        return UnsupportedOperation(f"{self.where} is being written")

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """A new archive holds nothing before this copy."""
        return None

    async def manifest_get(self, ref: str | None) -> ManifestLike:
        """Write-only."""
        raise self._refused()

    def blob_open(
        self, desc: Descriptor, offset: int = 0, *, verify: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """Write-only."""
        raise self._refused()

    async def tag_delete(self, tag: str) -> None:
        """Write-only: an archive being written only grows."""
        raise self._refused()

    async def manifest_delete(self, digest: Digest) -> None:
        """Write-only: an archive being written only grows."""
        raise self._refused()

    async def referrers(self, subject: Digest) -> Referrers:
        """None: a new archive holds nothing before this copy (its listings are written by
        this copy and not read back)."""
        return Referrers()
