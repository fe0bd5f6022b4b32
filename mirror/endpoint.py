"""The roles every place an image can live plays — a source (`ImageSource`), a destination
(`ImageDestination`), or both with removal (`Endpoint`) — and the optional capabilities the
copy engine asks for (ranged reads and writes); the engine uses only these."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mirror.errors import MirrorError
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, ManifestLike

__all__ = [
    "BlobLocator",
    "BlobSource",
    "Endpoint",
    "ImageDestination",
    "ImageSource",
    "InRegistry",
    "RangeFetcher",
    "RangeNotHonoured",
    "RangedSink",
    "RangedSource",
    "Referrers",
    "RemembersBlobs",
    "Reuse",
    "StoredBlobs",
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


class Reuse(enum.Enum):
    """What a destination made of a blob before any byte was sent (`reuse_blob`)."""

    #: it holds the blob already
    SKIPPED = "skipped"
    #: it took the blob from a sibling, without the bytes passing through us
    MOUNTED = "mounted"
    #: not reused: the bytes must be sent (`blob_put`)
    NONE = "none"


@runtime_checkable
class ImageSource(Protocol):
    """Where images are read from: a registry repository, a layout, an archive read in place.

    Every method raises the same errors whatever the source: ManifestNotFound and
    BlobNotFound for missing content, ContentError for bytes that do not match.
    """

    async def manifest_get(self, ref: str | None) -> ManifestLike:
        """The verified manifest under a tag/name or digest (None: the default)."""
        ...

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """What a tag/name or digest points at, or None; cheap where the source allows."""
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

    def tags(self) -> AsyncIterator[str]:
        """The tags (registry) or image names (layout)."""
        ...

    async def referrers(self, subject: Digest) -> Referrers:
        """The manifests whose subject is `subject` (signatures, SBOMs, attestations): by the
        referrers API, else by the fallback tag `<alg>-<hex>`; empty when there are none."""
        ...


@runtime_checkable
class ImageDestination(Protocol):
    """Where images are written: a registry repository, a layout, an archive being written.

    Of what it holds, a destination answers only what a copy asks before writing: what a tag
    points at, which referrers it lists, and whether a blob can be reused. It owns blob
    reuse (skipped, mounted, or not reused), as containers/image's `TryReusingBlob` does.
    """

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """What a tag/name or digest points at here, or None."""
        ...

    async def referrers(self, subject: Digest) -> Referrers:
        """The referrers of `subject` this destination lists (empty when none)."""
        ...

    async def reuse_blob(self, desc: Descriptor, source: ImageSource, *, ask: bool = True) -> Reuse:
        """Place the blob without its bytes if it can: already held, or mounted from a
        sibling (the source's repository, or where this run saw it). `ask=False`: the caller
        has just seen this destination empty, so whether it holds the blob is not asked."""
        ...

    def blob_turn(self, desc: Descriptor) -> AbstractAsyncContextManager[None]:
        """A turn at placing `desc`: two images of a run that need one blob take turns, so
        the second finds it placed (reused, not sent twice)."""
        ...

    def forget_blob(self, desc: Descriptor) -> None:
        """The destination said it lacks a blob this run placed: believe so (the next
        `reuse_blob` asks again)."""
        ...

    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Store a blob read from `source`; visible only once digest and size match.

        A transfer interrupted by a retryable error continues from where it stopped by
        calling `source(offset)` again; no byte is written twice or skipped.
        """
        ...

    async def manifest_put(self, manifest: ManifestLike) -> Descriptor:
        """Store a manifest by digest (its blobs are already there); not listed under a tag."""
        ...

    async def image_put(self, manifest: ManifestLike, tag: str | None) -> Descriptor:
        """Store a top-level manifest and point `tag` at it (None: untagged)."""
        ...


@runtime_checkable
class Endpoint(ImageSource, ImageDestination, Protocol):
    """A place images are read from and written to, and removed from: a registry
    repository or an OCI image layout."""

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the blob is already stored."""
        ...

    async def tag_delete(self, tag: str) -> None:
        """Remove a tag (a layout: an image name); the manifest stays where the endpoint can
        remove a tag alone. Raises ManifestNotFound."""
        ...

    async def manifest_delete(self, digest: Digest) -> None:
        """Remove a manifest and every tag pointing at it."""
        ...


class StoredBlobs:
    """Blob reuse for a destination that only ever holds what was written into it (a
    layout, an archive being written): a blob is skipped when it is there, never mounted."""

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the blob is already stored."""
        raise NotImplementedError

    async def reuse_blob(self, desc: Descriptor, source: ImageSource, *, ask: bool = True) -> Reuse:
        """SKIPPED when the blob is stored (always asked: asking costs a `stat`), else NONE."""
        return Reuse.SKIPPED if await self.blob_exists(desc) else Reuse.NONE

    def blob_turn(self, desc: Descriptor) -> AbstractAsyncContextManager[None]:
        """No turns: concurrent writes of one blob are safe here (each writes the same
        verified bytes, renamed into place once)."""
        return contextlib.nullcontext()

    def forget_blob(self, desc: Descriptor) -> None:
        """Nothing is believed: `blob_exists` looks every time."""


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
class RemembersBlobs(Protocol):
    """A source that keeps where blobs were found (a registry repository: mount sources)."""

    def blob_verified(self, desc: Descriptor) -> None:
        """A copy read `desc` from here and its destination verified every byte."""
        ...


@runtime_checkable
class InRegistry(Protocol):
    """A repository of a registry: a blob can be mounted between two of one registry."""

    registry: str
    name: str


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
