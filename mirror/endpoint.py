"""The one interface every place an image can live implements; the copy engine uses only this."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mirror.errors import MirrorError
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, ManifestLike

__all__ = [
    "BlobLocator",
    "BlobMounter",
    "BlobSource",
    "Endpoint",
    "RangeFetcher",
    "RangeNotHonoured",
    "RangedSink",
    "RangedSource",
    "Referrers",
    "bytes_source",
]

#: Opens a blob's bytes from an offset; a transfer that fails re-opens where it stopped.
BlobSource = Callable[[int], AsyncGenerator[bytes, None]]

#: fetch(start, end) streams bytes [start, end) of a blob, unverified
RangeFetcher = Callable[[int, int], AsyncGenerator[bytes, None]]


@dataclass(frozen=True)
class Referrers:
    """The referrers of a subject, and the fallback tag's index they were read from (its
    exact bytes, so a copy can keep its digest), when that is where they came from."""

    descriptors: tuple[Descriptor, ...] = ()
    fallback: Index | None = None

    def __bool__(self) -> bool:
        return bool(self.descriptors)

    @property
    def digests(self) -> set[Digest]:
        """The referrers' digests."""
        return {d.digest for d in self.descriptors}


class RangeNotHonoured(MirrorError):
    """The server answered a ranged request with the whole blob: use a single stream."""


def bytes_source(data: bytes) -> BlobSource:
    """A BlobSource over bytes in memory (manifests, configs, tests)."""

    async def read(offset: int) -> AsyncGenerator[bytes, None]:
        if offset < len(data):
            yield data[offset:]

    return read


@runtime_checkable
class Endpoint(Protocol):
    """A repository of images: a registry repository or an OCI image layout.

    Every method raises the same errors whatever the endpoint: ManifestNotFound and
    BlobNotFound for missing content, ContentError for bytes that do not match.
    """

    async def manifest_get(self, ref: str | None) -> ManifestLike:
        """The verified manifest under a tag/name or digest (None: the default)."""
        ...

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """What a tag/name or digest points at, or None; cheap where the endpoint allows."""
        ...

    async def manifest_put(self, manifest: ManifestLike) -> Descriptor:
        """Store a manifest by digest (its blobs are already there); not listed under a tag."""
        ...

    async def image_put(self, manifest: ManifestLike, tag: str | None) -> Descriptor:
        """Store a top-level manifest and point `tag` at it (None: untagged)."""
        ...

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the blob is already stored."""
        ...

    def blob_open(
        self, desc: Descriptor, offset: int = 0, *, verify: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """Stream a blob's bytes from `offset`; verified when read from the start.

        `verify=False` is for a caller that verifies the bytes itself and resumes a failed
        read itself (a copy, whose destination hashes everything it stores and re-opens the
        source where it stopped), so the content is hashed once and retries are counted once.
        """
        ...

    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Store a blob read from `source`; visible only once digest and size match.

        A transfer interrupted by a retryable error continues from where it stopped by
        calling `source(offset)` again; no byte is written twice or skipped.
        """
        ...

    def tags(self) -> AsyncIterator[str]:
        """The tags (registry) or image names (layout)."""
        ...

    async def tag_delete(self, tag: str) -> None:
        """Remove a tag (a layout: an image name); the manifest stays where the endpoint can
        remove a tag alone. Raises ManifestNotFound, or UnsupportedOperation (read-only)."""
        ...

    async def manifest_delete(self, digest: Digest) -> None:
        """Remove a manifest and every tag pointing at it."""
        ...

    async def referrers(self, subject: Digest) -> Referrers:
        """The manifests whose subject is `subject` (signatures, SBOMs, attestations): by the
        referrers API, else by the fallback tag `<alg>-<hex>`; empty when there are none."""
        ...


class BlobLocator(Protocol):
    """Where blobs are known to be in a registry's repositories (mount sources)."""

    def candidates(self, registry: str, digest: Digest, exclude: str) -> list[str]:
        """Repositories of `registry` where `digest` was seen, most recent first."""
        ...

    def remember(self, registry: str, digest: Digest, repository: str) -> None:
        """`digest` is in `repository` of `registry` now."""
        ...

    def forget(self, registry: str, digest: Digest, repository: str) -> None:
        """`digest` could not be mounted from `repository`: drop the entry."""
        ...

    def claim(self, registry: str, digest: Digest) -> asyncio.Lock:
        """The lock that makes transfers of one blob into one registry take turns."""
        ...

    def here(self, registry: str, digest: Digest, repository: str) -> bool:
        """True when this run put or saw `digest` in `repository`."""
        ...


@runtime_checkable
class BlobMounter(Protocol):
    """An endpoint that can take a blob from a sibling without the bytes passing through us."""

    registry: str
    name: str
    #: where blobs are in the registry's repositories, when known
    locations: BlobLocator | None

    async def blob_mount(self, desc: Descriptor, source_repository: str) -> bool:
        """Mount `desc` from `source_repository` on the same registry; False if refused."""
        ...


@runtime_checkable
class RangedSource(Protocol):
    """An endpoint that serves byte ranges of a blob."""

    def blob_range(self, desc: Descriptor, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) of the blob; raises RangeNotHonoured if ranges are ignored."""
        ...


@runtime_checkable
class RangedSink(Protocol):
    """An endpoint that stores a blob fetched as parallel ranges and verified as one."""

    async def blob_put_ranged(
        self,
        desc: Descriptor,
        fetch: RangeFetcher,
        *,
        part_size: int,
        parallel: int,
        fallback: BlobSource,
    ) -> None:
        """Store `desc` from ranges of `part_size`, `parallel` at once; else `fallback`."""
        ...
