"""What a copy tells of its progress: the `ProgressSink` protocol and the silent default."""

from __future__ import annotations

from typing import Protocol

from mirror.oci.model import Descriptor

__all__ = ["ProgressSink", "Silent"]


class ProgressSink(Protocol):
    """Receives progress events; the CLI draws them, the library default ignores them."""

    def phase(self, message: str) -> None:
        """A stage of long work began (unpacking, verifying, packing): say so."""

    def image_planned(self, blobs: int, size: int) -> None:
        """A copy will see to `blobs` blobs of `size` bytes in all (some may be there)."""

    def blob_started(self, desc: Descriptor) -> None:
        """A blob transfer began."""

    def blob_advanced(self, desc: Descriptor, size: int) -> None:
        """`size` more bytes of a blob went through."""

    def blob_finished(self, desc: Descriptor, how: str) -> None:
        """A blob is done: `copied`, `mounted` or `skipped`."""


class Silent:
    """The ProgressSink that shows nothing (the library's default)."""

    def phase(self, message: str) -> None:
        """Nothing."""

    def image_planned(self, blobs: int, size: int) -> None:
        """Nothing."""

    def blob_started(self, desc: Descriptor) -> None:
        """Nothing."""

    def blob_advanced(self, desc: Descriptor, size: int) -> None:
        """Nothing."""

    def blob_finished(self, desc: Descriptor, how: str) -> None:
        """Nothing."""
