"""One repository in a registry: manifests, blobs, tags. It is a copy endpoint.

Over 400 lines on purpose: one class for the distribution API's repository routes (manifests,
blobs, mounts, deletes, listings, referrers), each a short request; the transfers themselves
are `download.py` and `upload.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from urllib.parse import quote

from mirror.endpoint import BlobLocator, BlobSource, ImageSource, Referrers, Reuse
from mirror.errors import (
    DigestMismatch,
    Forbidden,
    InvalidDigest,
    ManifestInvalid,
    ManifestNotFound,
    NotFound,
    RegistryError,
    Unauthorized,
    UnsupportedOperation,
)
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest, DigestHasher, check_content
from mirror.oci.model import Descriptor, Index, ManifestLike, fallback_tag, parse_manifest
from mirror.oci.reference import validate_tag
from mirror.registry.download import open_blob, open_range
from mirror.registry.errors import Missing
from mirror.registry.handle import RepositoryHandle
from mirror.registry.paging import paged_names
from mirror.registry.reuse import reuse_in_registry
from mirror.registry.transport import RegistryTransport, read_body, repeated_whole
from mirror.registry.upload import upload_blob
from mirror.support.tasks import together

__all__ = ["Repository"]

_log = logging.getLogger("mirror.registry")
#: HEAD requests at once when tags are resolved to digests
_LOOKUPS_AT_ONCE = 8


class Repository:
    """A repository (`name`) in the registry behind `transport`."""

    def __init__(
        self,
        transport: RegistryTransport,
        name: str,
        *,
        writing: bool = False,
        locations: BlobLocator | None = None,
    ) -> None:
        #: the repository as its blob transfers (`download.py`, `upload.py`) see it
        self.handle = RepositoryHandle(transport, name, writing)
        self.transport = transport
        self.name = name
        #: where blobs are in this registry's other repositories (mount sources)
        self.locations = locations
        self.registry = transport.registry
        #: a copy's destination: every request, reads included, goes with the push token,
        #: so one token serves the whole copy (as skopeo asks)
        self.writing = writing

    def __repr__(self) -> str:
        return f"Repository({self.registry}/{self.name})"

    @property
    def pull(self) -> tuple[str, ...]:
        """Token scopes for reading (the push scope when this is a destination)."""
        return self.handle.pull

    @property
    def push(self) -> tuple[str, ...]:
        """Token scopes for writing."""
        return self.handle.push

    @property
    def delete_scope(self) -> tuple[str, ...]:
        """Token scopes for deleting."""
        return (f"repository:{self.name}:delete",)

    def describe_blob(self, digest: Digest | str) -> str:
        """Where the blob lives, for messages: `blob host/repo@digest`."""
        return self.describe("blob", str(digest))

    def describe(self, kind: str, ref: str) -> str:
        """How messages name something in this repository, e.g. `blob host/repo@sha256:…`."""
        return self.handle.describe(kind, ref)

    # -- manifests ----------------------------------------------------------------------

    @repeated_whole
    async def manifest_get(self, ref: str | None) -> ManifestLike:
        """Fetch and verify a manifest by tag or digest (4 MiB cap, digest and type checks)."""
        ref = ref or "latest"
        what = self.describe("manifest", ref)
        resp = await self.transport.request(
            "GET",
            f"/v2/{self.name}/manifests/{ref}",
            scopes=self.pull,
            what=what,
            missing=Missing.MANIFEST,
            headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)},
        )
        try:
            length = resp.content_length
            if length is not None and length > mt.MAX_MANIFEST_SIZE:
                raise ManifestInvalid(f"{what} is {length} bytes, over the 4 MiB limit")
            raw = await read_body(
                resp, mt.MAX_MANIFEST_SIZE + 1, what, self.transport.options.limits
            )
            if len(raw) > mt.MAX_MANIFEST_SIZE:
                raise ManifestInvalid(f"{what} is over the 4 MiB limit")
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest")
        finally:
            resp.release()
        digest = _check_manifest_digest(raw, ref, header_digest, what)
        try:
            return parse_manifest(raw, content_type or None, digest=digest)
        except ManifestInvalid as exc:
            raise ManifestInvalid(f"{what}: {exc}") from None

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """The descriptor of a manifest by tag or digest, or None when it does not exist
        (a GET when the HEAD's answer does not say it: two reads, each retried alone)."""
        ref = ref or "latest"
        found = await self._head(ref)
        if isinstance(found, _Incomplete):
            return (await self.manifest_get(ref)).descriptor()
        return found

    @repeated_whole
    async def _head(self, ref: str) -> Descriptor | _Incomplete | None:
        resp = await self.transport.request(
            "HEAD",
            f"/v2/{self.name}/manifests/{ref}",
            scopes=self.pull,
            what=self.describe("manifest", ref),
            missing=Missing.MANIFEST,
            ok=(200, 404),
            headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)},
        )
        resp.release()
        if resp.status == 404:
            return None
        digest_text = resp.headers.get("Docker-Content-Digest")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        length = resp.content_length
        if not digest_text or length is None or media_type not in mt.MANIFESTS:
            return _INCOMPLETE
        try:
            return Descriptor(media_type, Digest(digest_text), length)
        except InvalidDigest:
            return _INCOMPLETE

    @repeated_whole
    async def manifest_put(self, manifest: ManifestLike, tag: str | None = None) -> Descriptor:
        """Upload the manifest's exact bytes under `tag`, or by digest when `tag` is None."""
        ref = tag or str(manifest.digest)
        resp = await self.transport.request(
            "PUT",
            f"/v2/{self.name}/manifests/{ref}",
            scopes=self.push,
            what=self.describe("manifest", ref),
            missing=Missing.MANIFEST,
            ok=(200, 201, 202),
            headers={"Content-Type": manifest.media_type},
            data=manifest.raw,
        )
        resp.release()
        answered = resp.headers.get("Docker-Content-Digest")
        if answered and answered != manifest.digest and answered.startswith("sha256:"):
            raise DigestMismatch(
                f"{self.describe('manifest', ref)}: registry stored {answered}, "
                f"expected {manifest.digest}"
            )
        return manifest.descriptor()

    async def image_put(self, manifest: ManifestLike, tag: str | None) -> Descriptor:
        """Upload a top-level manifest under its tag (same as `manifest_put` for a registry)."""
        return await self.manifest_put(manifest, tag)

    async def manifest_delete(self, digest: Digest) -> None:
        """Delete a manifest by digest (its tags go with it)."""
        await self._delete_request("manifests", Missing.MANIFEST, Digest(digest))

    async def tag_delete(self, tag: str) -> None:
        """Delete a tag. Where the registry cannot delete a tag alone (the distribution spec
        lets it answer 400 or 405), delete its manifest when no other tag points at it, and
        refuse otherwise."""
        head = await self.manifest_head(validate_tag(tag))
        if head is None:
            raise ManifestNotFound(f"tag {self.registry}/{self.name}:{tag} not found")
        try:
            await self._delete_request("manifests", Missing.MANIFEST, tag)
            return
        except RegistryError as exc:
            if exc.status not in (400, 405) and "UNSUPPORTED" not in exc.codes:
                raise
        others = [t for t in (await self.tags_by_digest()).get(str(head.digest), []) if t != tag]
        if others:
            raise UnsupportedOperation(
                f"{self.registry} cannot delete tag {tag!r} alone and its manifest "
                f"{head.digest} also carries {', '.join(sorted(others))}"
            )
        await self.manifest_delete(head.digest)

    async def _delete_request(self, collection: str, missing: Missing, reference: str) -> None:
        await self.transport.delete(
            f"/v2/{self.name}/{collection}/{reference}",
            scopes=self.delete_scope,
            what=self.describe(missing.name.lower(), reference),
            missing=missing,
            ok=(200, 202),
        )

    # -- blobs ----------------------------------------------------------------------------

    @repeated_whole
    async def blob_size(self, digest: Digest) -> int | None:
        """The size of a blob (HEAD), or None when the registry does not have it."""
        return await self.handle.blob_size(digest)

    @repeated_whole
    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the registry has the blob (HEAD)."""
        resp = await self.transport.request(
            "HEAD",
            f"/v2/{self.name}/blobs/{desc.digest}",
            scopes=self.pull,
            what=self.describe("blob", str(desc.digest)),
            missing=Missing.BLOB,
            ok=(200, 404),
        )
        resp.release()
        return resp.status == 200

    def blob_open(
        self, desc: Descriptor, offset: int = 0, *, verify: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """Stream a blob from `offset` (verified when whole), resuming after cut connections."""
        return open_blob(self.handle, desc, offset, verify=verify)

    def blob_verified(self, desc: Descriptor) -> None:
        """A copy read `desc` from here and its destination verified it: remember it is here
        (a mount source for the registry's other repositories)."""
        if self.locations is not None:
            self.locations.remember(self.registry, desc.digest, self.name)

    def blob_range(self, desc: Descriptor, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) of a blob (unverified: the caller assembles and verifies)."""
        return open_range(self.handle, desc, start, end)

    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Upload a blob (one PUT, or resumable chunks for large blobs), with retries; then
        remember it is here (the next image of the run that needs it mounts or skips it)."""
        await upload_blob(self.handle, desc, source)
        if self.locations is not None:
            self.locations.remember(self.registry, desc.digest, self.name)

    async def reuse_blob(self, desc: Descriptor, source: ImageSource, *, ask: bool = True) -> Reuse:
        """Skip a blob held (or placed by this run), mount one a sibling repository holds;
        else NONE (see `mirror.registry.reuse`)."""
        return await reuse_in_registry(self, desc, source, ask=ask)

    def blob_turn(self, desc: Descriptor) -> AbstractAsyncContextManager[None]:
        """Images of a run that need one blob in this registry place it one at a time."""
        if self.locations is None:
            return contextlib.nullcontext()
        return self.locations.claim(self.registry, desc.digest)

    def forget_blob(self, desc: Descriptor) -> None:
        """The registry said it lacks `desc`: no longer believe this run placed it here."""
        if self.locations is not None:
            self.locations.forget(self.registry, desc.digest, self.name)

    @repeated_whole
    async def start_upload(self) -> tuple[str, int]:
        """Open an upload session: its Location and the registry's minimum chunk size."""
        return await self.handle.start_upload()

    @repeated_whole
    async def blob_mount(self, desc: Descriptor, source_repository: str) -> bool:
        """Ask the registry to mount the blob from another repository; False (and an ordinary
        upload follows) when it would not: refused (401, 403), unknown there (404), or an
        upload session offered instead (202)."""
        what = self.describe("blob mount", str(desc.digest))
        try:
            resp = await self.transport.request(
                "POST",
                f"/v2/{self.name}/blobs/uploads/?mount={quote(str(desc.digest), safe='')}"
                f"&from={quote(source_repository, safe='/')}",
                scopes=(*self.push, f"repository:{source_repository}:pull"),
                what=what,
                missing=Missing.BLOB,
                ok=(201, 202),
                headers={"Content-Length": "0"},
            )
        except (Unauthorized, Forbidden, NotFound) as exc:
            _log.info("%s from %s declined (%s): uploading it", what, source_repository, exc)
            return False
        resp.release()
        if resp.status == 201:
            return True
        _log.info("%s from %s declined (202): uploading it", what, source_repository)
        location = resp.headers.get("Location")
        if location:
            await self.handle.cancel_upload(location)
        return False

    async def blob_delete(self, digest: Digest) -> None:
        """Delete a blob by digest."""
        await self._delete_request("blobs", Missing.BLOB, Digest(digest))

    # -- listing --------------------------------------------------------------------------

    async def tags_by_digest(self) -> dict[str, list[str]]:
        """Digest -> the tags pointing at it, for every tag (a HEAD per tag, a few at once)."""
        tags = [tag async for tag in self.tags()]
        gate = asyncio.Semaphore(_LOOKUPS_AT_ONCE)

        async def resolve(tag: str) -> tuple[str, str | None]:
            async with gate:
                head = await self.manifest_head(tag)
            return tag, str(head.digest) if head else None

        by_digest: dict[str, list[str]] = {}
        for tag, digest in await together(resolve(t) for t in tags):
            if digest is not None:
                by_digest.setdefault(digest, []).append(tag)
        return by_digest

    async def referrers(self, subject: Digest) -> Referrers:
        """The manifests whose subject is `subject`: the referrers API where the registry
        has it, else the index under the fallback tag `<alg>-<hex>` (empty when neither)."""
        found = await self.referrers_api(Digest(subject))
        if found is not None:
            return Referrers(tuple(found))
        return await self.referrers_by_tag(Digest(subject))

    async def referrers_by_tag(self, subject: Digest) -> Referrers:
        """The referrers the fallback tag's index lists (empty when there is none)."""
        try:
            index = await self.manifest_get(fallback_tag(subject))
        except NotFound:
            return Referrers()
        if not isinstance(index, Index):
            return Referrers()
        return Referrers(index.manifests, index)

    @repeated_whole
    async def referrers_api(self, subject: Digest) -> list[Descriptor] | None:
        """The referrers API's listing, or None where the registry lacks the API (it may not
        answer 404 when it has it: distribution spec 1.1, so a 404 or 405 is remembered and
        the API is not asked again in this run)."""
        if self.transport.lacks_referrers_api:
            return None
        what = f"referrers of {self.registry}/{self.name}@{subject}"
        resp = await self.transport.request(
            "GET",
            f"/v2/{self.name}/referrers/{subject}",
            scopes=self.pull,
            what=what,
            ok=(200, 400, 404, 405, 406),
            headers={"Accept": mt.OCI_INDEX},
        )
        try:
            if resp.status in (404, 405):
                self.transport.lacks_referrers_api = True
            if resp.status != 200 or not resp.headers.get("Content-Type", "").startswith(
                mt.OCI_INDEX
            ):
                return None
            raw = await read_body(resp, mt.MAX_MANIFEST_SIZE, what, self.transport.options.limits)
        finally:
            resp.release()
        index = parse_manifest(raw, mt.OCI_INDEX)
        return list(index.manifests) if isinstance(index, Index) else None

    async def tags(self, page_size: int = 1000) -> AsyncIterator[str]:
        """Every tag of the repository, following `Link` pages."""
        async for tag in paged_names(
            self.transport,
            f"/v2/{self.name}/tags/list?n={page_size}",
            "tags",
            scopes=self.pull,
            what=f"tags of {self.registry}/{self.name}",
        ):
            yield tag


class _Incomplete:
    """A HEAD answered without the digest, size or type of the manifest."""


_INCOMPLETE = _Incomplete()


def _check_manifest_digest(raw: bytes, ref: str, header: str | None, what: str) -> Digest:
    sha256 = Digest.of(raw)
    if ref.startswith(("sha256:", "sha512:")):
        wanted = Digest(ref)
        actual = sha256 if wanted.algorithm == "sha256" else Digest.of(raw, wanted.algorithm)
        if actual != wanted:
            raise DigestMismatch(f"{what}: content hashes to {actual}")
    if header:
        try:
            claimed = Digest(header)
        except InvalidDigest:
            raise ManifestInvalid(f"{what}: bad Docker-Content-Digest header") from None
        hasher = DigestHasher(claimed.algorithm)
        hasher.update(raw)
        check_content(hasher, claimed, len(raw), "manifest")
    return Digest(ref) if ref.startswith(("sha256:", "sha512:")) else sha256
