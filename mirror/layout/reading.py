"""The read side of everything shaped like an OCI image layout: a layout directory and a tar
archive read in place share it. A store says where a blob's bytes are (a file, or a span of
the archive) and what its `index.json` holds; names, digests, manifests, verified blob
streams and the 4 MiB manifest cap are decided here, once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiofiles

from mirror.endpoint import Referrers
from mirror.errors import (
    BlobNotFound,
    InvalidReference,
    ManifestInvalid,
    ManifestNotFound,
)
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest, verify_whole
from mirror.oci.model import Descriptor, Index, ManifestLike, fallback_tag, parse_manifest
from mirror.support.oserrors import storage_boundary, storage_boundary_gen

__all__ = [
    "CHUNK_SIZE",
    "BlobSpan",
    "LayoutImage",
    "LayoutReader",
    "close_on_error",
    "resolve_among",
]

#: how much of a blob one read takes
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class LayoutImage:
    """One entry of `index.json`: its name (if any) and what it points at."""

    name: str | None
    descriptor: Descriptor


@dataclass(frozen=True)
class BlobSpan:
    """Where a stored blob's bytes are: an open file (ours to close) and the blob's offset."""

    fd: int
    start: int


class LayoutReader:
    """Reads shared by layouts and archives; a subclass supplies `where`, `read_index`,
    `stored_size` and `open_span`."""

    #: the store, for messages ("layout /x", "archive /y.tar")
    where: str

    async def read_index(self) -> dict[str, Any]:
        """The parsed `index.json`."""
        raise NotImplementedError

    def stored_size(self, digest: Digest) -> int | None:
        """The size of the stored blob `digest`, or None when it is not stored."""
        raise NotImplementedError

    async def open_span(self, desc: Descriptor) -> BlobSpan:
        """Open the blob `desc` names; raises BlobNotFound, or SizeMismatch for another size."""
        raise NotImplementedError

    # -- blobs --------------------------------------------------------------------------

    @storage_boundary
    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the blob is stored with the descriptor's size."""
        return self.stored_size(desc.digest) == desc.size

    @storage_boundary_gen
    async def blob_open(
        self, desc: Descriptor, offset: int = 0, *, verify: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """Stream the blob from `offset`; never more than `desc.size` bytes; verified when whole.

        Raises BlobNotFound, SizeMismatch, or DigestMismatch (at the end of a whole read).
        """
        span = await self.open_span(desc)
        raw = _read_span(span.fd, span.start + offset, desc.size - offset)
        async for chunk in verify_whole(raw, desc, offset) if verify else raw:
            yield chunk

    async def blob_read(self, desc: Descriptor) -> bytes:
        """The whole verified blob in memory; only for small blobs (manifests, configs)."""
        if desc.size > mt.MAX_MANIFEST_SIZE:
            raise ManifestInvalid(
                f"{desc.digest} is {desc.size} bytes, over the {mt.MAX_MANIFEST_SIZE} byte limit"
            )
        return b"".join([chunk async for chunk in self.blob_open(desc)])

    # -- manifests and names ------------------------------------------------------------

    async def manifest_by_descriptor(self, desc: Descriptor) -> ManifestLike:
        """Read, verify and parse the manifest a descriptor points at."""
        try:
            raw = await self.blob_read(desc)
        except BlobNotFound:
            raise ManifestNotFound(
                f"manifest {desc.digest} is listed but its blob is missing from {self.where}"
            ) from None
        return parse_manifest(raw, desc.media_type, digest=desc.digest)

    @storage_boundary
    async def manifest_get(self, ref: str | None = None) -> ManifestLike:
        """The manifest or index named `ref` (a name, a digest, or None for the only image)."""
        return await self.manifest_by_descriptor(await self.resolve(ref))

    @storage_boundary
    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """The descriptor an image name or digest resolves to, or None."""
        try:
            return await self.resolve(ref)
        except ManifestNotFound:
            return None

    @storage_boundary
    async def images(self) -> list[LayoutImage]:
        """Every entry of `index.json`, in order, with its name."""
        index = await self.read_index()
        out = []
        for i, entry in enumerate(index["manifests"]):
            desc = Descriptor.from_json(entry, f"{self.where}: index.json manifests[{i}]")
            out.append(LayoutImage(desc.ref_name, desc))
        return out

    async def tags(self) -> AsyncIterator[str]:
        """The image names in `index.json`, in order."""
        for image in await self.images():
            if image.name is not None:
                yield image.name

    @storage_boundary
    async def referrers(self, subject: Digest) -> Referrers:
        """The manifests the fallback-tag indexes of `subject` list: images named
        `<alg>-<hex>`, or `<repository>:<alg>-<hex>` in a layout holding many repositories
        (each referrer once; the index itself when there is just one)."""
        tag = fallback_tag(subject)
        found: dict[Digest, Descriptor] = {}
        indexes: list[Index] = []
        for image in await self.images():
            if image.name is None or image.name.rsplit(":", 1)[-1] != tag:
                continue
            index = await self.manifest_by_descriptor(image.descriptor)
            if isinstance(index, Index) and index.digest not in {i.digest for i in indexes}:
                indexes.append(index)
                for desc in index.manifests:
                    found.setdefault(desc.digest, desc)
        return Referrers(tuple(found.values()), indexes[0] if len(indexes) == 1 else None)

    async def resolve(self, ref: str | None = None) -> Descriptor:
        """The descriptor for an image name, a digest, or (None) the only image."""
        return await resolve_among(await self.images(), ref, self.where, self._sniff)

    async def _sniff(self, digest: Digest) -> Descriptor:
        size = self.stored_size(digest)
        if size is None:
            raise ManifestNotFound(f"no manifest {digest} in {self.where}")
        probe = Descriptor("application/json", digest, size)
        manifest = parse_manifest(await self.blob_read(probe), None, digest=digest)
        return manifest.descriptor()


async def _read_span(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    """Up to `length` bytes of the open file `fd` from `start` (closed at the end)."""
    async with aiofiles.open(fd, "rb") as f:
        await f.seek(start)
        left = length
        while left > 0:
            chunk = await f.read(min(CHUNK_SIZE, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def close_on_error(fd: int, check: Callable[[], None]) -> int:
    """Run `check` on an open file; close the file when it raises; the file otherwise."""
    try:
        check()
    except BaseException:
        os.close(fd)
        raise
    return fd


async def resolve_among(
    images: list[LayoutImage],
    ref: str | None,
    where: str,
    sniff: Callable[[Digest], Awaitable[Descriptor]],
) -> Descriptor:
    """Find an image by name, by digest (`sniff` reads an unlisted manifest), or the only one."""
    if ref is None:
        if len(images) == 1:
            return images[0].descriptor
        if not images:
            raise ManifestNotFound(f"{where} holds no image")
        raise InvalidReference(f"{where} holds {len(images)} images: name one as oci:PATH:REF")
    if ref.startswith(("sha256:", "sha512:")):
        digest = Digest(ref)
        for image in images:
            if image.descriptor.digest == digest:
                return image.descriptor
        return await sniff(digest)
    for image in images:
        if image.name == ref:
            return image.descriptor
    raise ManifestNotFound(f"no image named {ref!r} in {where}")
