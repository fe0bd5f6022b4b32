"""A plain `.tar` layout archive read in place, as a read-only endpoint: members are found by
their offsets, and every read goes through the layout's read path (`LayoutReader`).
"""

from __future__ import annotations

import asyncio
import os
import tarfile
from pathlib import Path
from typing import Any

from mirror.archive.tarfiles import (
    MAX_TOP_FILE,
    SafeTarInfo,
    copies_differ,
    named_members,
    same_bytes,
    seen_before,
)
from mirror.errors import BlobNotFound, LayoutError, SizeMismatch
from mirror.layout import index_file
from mirror.layout.reading import BlobSpan, LayoutReader
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor

__all__ = ["ArchiveReader"]


def _member(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.encoded}"


class ArchiveReader(LayoutReader):
    """A plain `.tar` layout archive read in place (a source only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"archive {path}"
        self._members: dict[str, tuple[int, int]] = {}
        self._index: dict[str, Any] = {}

    @classmethod
    async def open(cls, path: Path) -> ArchiveReader:
        """Index the archive's members (headers only) and read its `index.json`."""
        reader = cls(path)
        await asyncio.to_thread(reader._scan)
        return reader

    def _scan(self) -> None:
        seen: dict[str, int] = {}
        repeats: list[tuple[str, int]] = []
        try:
            with tarfile.open(self.path, "r:", tarinfo=SafeTarInfo) as tar:
                for member, target in named_members(tar, self.where):
                    if seen_before(self.where, target, member.size, seen):
                        repeats.append((target, member.offset_data))
                        continue
                    self._members[target] = (member.offset_data, member.size)
        except tarfile.TarError as exc:
            raise LayoutError(f"archive {self.path} is truncated or not a tar: {exc}") from None
        end = max((o + s for o, s in self._members.values()), default=0)
        if end > self.path.stat().st_size:
            raise LayoutError(f"archive {self.path} is truncated")
        self._compare(repeats)
        if "index.json" not in self._members or "oci-layout" not in self._members:
            raise LayoutError(f"archive {self.path} holds no OCI image layout")
        offset, size = self._members["index.json"]
        if size > MAX_TOP_FILE:
            raise LayoutError(
                f"archive {self.path}: index.json is {size} bytes, over the {MAX_TOP_FILE} limit"
            )
        with open(self.path, "rb") as f:
            f.seek(offset)
            raw = f.read(size)
        self._index = index_file.parse_index(raw, f"{self.path}:index.json")

    def _compare(self, repeats: list[tuple[str, int]]) -> None:
        """A member there twice (at the same size) must hold the same bytes twice: what is
        verified (the first copy, as an unpacked archive keeps it) is what is read."""
        for target, offset in repeats:
            first, size = self._members[target]
            with open(self.path, "rb") as a, open(self.path, "rb") as b:
                a.seek(first)
                b.seek(offset)
                if not same_bytes(a, b, size):
                    raise copies_differ(self.where, target)

    async def read_index(self) -> dict[str, Any]:
        """The archive's `index.json`, read when it was opened."""
        return self._index

    def describe_blob(self, digest: Digest | str) -> str:
        """Where the blob lives, for messages: its member in the archive."""
        return f"archive member {self.path}:{_member(Digest(digest))}"

    def stored_size(self, digest: Digest) -> int | None:
        """The size of the member `blobs/<alg>/<hex>`, or None."""
        found = self._members.get(_member(digest))
        return None if found is None else found[1]

    async def open_span(self, desc: Descriptor) -> BlobSpan:
        """The archive opened at the blob's member; its size must be the descriptor's."""
        found = self._members.get(_member(desc.digest))
        if found is None:
            raise BlobNotFound(f"blob {desc.digest} is not in archive {self.path}")
        if found[1] != desc.size:
            raise SizeMismatch(
                f"blob {desc.digest} in {self.path} has {found[1]} bytes, expected {desc.size}"
            )
        fd = await asyncio.to_thread(os.open, self.path, os.O_RDONLY | os.O_CLOEXEC)
        return BlobSpan(fd, found[0])
