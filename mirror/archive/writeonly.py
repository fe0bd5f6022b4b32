"""What every archive being written answers to a read: nothing was there before this copy,
and nothing can be read back or removed until the file is finished."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from mirror.endpoint import Referrers
from mirror.errors import UnsupportedOperation
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, ManifestLike

__all__ = ["WriteOnly"]


class WriteOnly:
    """The read half of a write-only archive endpoint; `label` names it in errors."""

    label: str

    def _refused(self) -> UnsupportedOperation:
        return UnsupportedOperation(f"{self.label} is being written")

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
