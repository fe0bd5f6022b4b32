"""The content client for one repository: blobs and manifests in and out, every byte verified
(after ContainerRegistryContentClient of the Azure SDKs)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import aiofiles

from mirror.endpoint import bytes_source
from mirror.errors import BlobNotFound, ManifestInvalid
from mirror.manage.client import _checked_name, _OwnsConnections, endpoint_options
from mirror.oci.digest import Digest, DigestHasher
from mirror.oci.model import Descriptor, ManifestLike, parse_manifest
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions

__all__ = ["ContainerRegistryContentClient", "DownloadedBlob", "FetchedManifest", "UploadedBlob"]

_SPOOL_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadedBlob:
    """What `upload_blob` stored."""

    digest: str
    size: int


@dataclass(frozen=True)
class FetchedManifest:
    """A verified manifest: its digest, media type, exact bytes and parsed JSON."""

    digest: str
    media_type: str
    content: bytes = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class DownloadedBlob:
    """A blob being downloaded: `content` yields verified bytes (raises at the end on a
    mismatch, so treat them as unverified until it finishes)."""

    digest: str
    size: int
    content: AsyncGenerator[bytes, None] = field(repr=False)


class ContainerRegistryContentClient(_OwnsConnections):
    """Blobs and manifests of one repository. Use as an async context manager."""

    def __init__(
        self,
        endpoint: str,
        repository: str,
        credential: Any = None,
        *,
        audience: str | None = None,
        options: RegistryOptions | None = None,
    ) -> None:
        self.registry, self.options = endpoint_options(endpoint, credential, audience, options)
        self.repository_name = _checked_name(self.registry, repository)
        self.client = RegistryClient(self.options)
        self.repo = self.client.repository(RegistryReference(self.registry, self.repository_name))

    async def upload_blob(self, data: bytes | BinaryIO | AsyncIterable[bytes]) -> UploadedBlob:
        """Upload bytes, a binary file or an async stream; return its digest and size.

        A stream is spooled to a temporary file while hashed (the digest must be known
        before the upload finishes), so memory stays flat.
        """
        if isinstance(data, bytes | bytearray):
            raw = bytes(data)
            desc = Descriptor("application/octet-stream", Digest.of(raw), len(raw))
            await self.repo.blob_put(desc, bytes_source(raw))
            return UploadedBlob(str(desc.digest), desc.size)
        with tempfile.TemporaryDirectory(prefix="mirror-upload-") as spool_dir:
            path = os.path.join(spool_dir, "blob")
            desc = await _spool(data, path)

            async def from_file(offset: int) -> AsyncGenerator[bytes, None]:
                async with aiofiles.open(path, "rb") as f:
                    await f.seek(offset)
                    while chunk := await f.read(_SPOOL_CHUNK):
                        yield chunk

            await self.repo.blob_put(desc, from_file)
        return UploadedBlob(str(desc.digest), desc.size)

    async def download_blob(self, digest: str) -> DownloadedBlob:
        """Start downloading a blob; its bytes are checked against `digest` as they stream."""
        checked = Digest(digest)
        size = await self.repo.blob_size(checked)
        if size is None:
            raise BlobNotFound(f"blob {self.registry}/{self.repository_name}@{checked} not found")
        desc = Descriptor("application/octet-stream", checked, size)
        return DownloadedBlob(str(checked), size, self.repo.blob_open(desc))

    async def get_manifest(self, tag_or_digest: str) -> FetchedManifest:
        """A verified manifest with its exact bytes."""
        manifest = await self.repo.manifest_get(tag_or_digest)
        return FetchedManifest(
            str(manifest.digest), manifest.media_type, manifest.raw, json.loads(manifest.raw)
        )

    async def set_manifest(
        self,
        manifest: bytes | dict[str, Any] | ManifestLike,
        *,
        tag: str | None = None,
        media_type: str | None = None,
    ) -> str:
        """Upload a manifest (exact bytes, a JSON object, or a parsed one); return its digest."""
        if isinstance(manifest, dict):
            body = dict(manifest)
            if media_type and "mediaType" not in body:
                body["mediaType"] = media_type
            raw = json.dumps(body, separators=(",", ":")).encode()
            parsed = parse_manifest(raw, media_type)
        elif isinstance(manifest, bytes):
            parsed = parse_manifest(manifest, media_type)
        else:
            parsed = manifest
        if parsed.media_type is None:
            raise ManifestInvalid("manifest has no media type")
        await self.repo.manifest_put(parsed, tag)
        return str(parsed.digest)

    async def delete_manifest(self, digest: str) -> None:
        """Delete a manifest by digest."""
        await self.repo.manifest_delete(Digest(digest))

    async def delete_blob(self, digest: str) -> None:
        """Delete a blob by digest."""
        await self.repo.blob_delete(Digest(digest))


async def _spool(data: BinaryIO | AsyncIterable[bytes], path: str) -> Descriptor:
    hasher = DigestHasher()
    async with aiofiles.open(path, "wb") as out:
        if isinstance(data, AsyncIterable):
            async for chunk in data:
                hasher.update(chunk)
                await out.write(chunk)
        else:
            while chunk := data.read(_SPOOL_CHUNK):
                hasher.update(chunk)
                await out.write(chunk)
    return Descriptor("application/octet-stream", hasher.digest(), hasher.size)
