"""A copy into `oci-archive:` written straight into the tar stream, as a write-only endpoint.

Each blob is appended as a tar member while it is hashed; a blob that does not verify aborts
the archive (the temporary file is deleted, nothing appears under the final name). Blob writes
are serialised (a tar is one stream); `index.json` and `oci-layout` come last, then the file
is fsynced and renamed into place.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import IO, Any

import zstandard

from mirror.archive.writeonly import WriteOnly, receive
from mirror.endpoint import BlobSource
from mirror.errors import BlobNotFound
from mirror.layout import index_file
from mirror.oci.model import Descriptor, ManifestLike
from mirror.retry import RetryPolicy
from mirror.support.fsutil import fsync_dir, temp_name
from mirror.support.oserrors import storage_boundary
from mirror.support.tasks import finish_in_thread

__all__ = ["ArchiveWriter"]

_NUL = b"\0"


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(tarfile.PAX_FORMAT)


class ArchiveWriter(WriteOnly):
    """A new layout archive written as one stream (write-only endpoint)."""

    def __init__(self, path: Path, retry: RetryPolicy | None = None) -> None:
        self.path = path
        self.where = f"archive {path}"
        self.retry = retry or RetryPolicy()
        self._tmp = path.parent / temp_name(f".{path.name}")
        self._raw: IO[bytes] | None = None
        self._sink: Any = None
        self._written = 0
        self._blobs: dict[str, int] = {}
        self._entries: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    @storage_boundary
    async def start(self) -> None:
        """Create the temporary file (and the zstd stream for `.zst` names)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self._tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self._sink = self._raw
        if self.path.suffix in (".zst", ".zstd"):
            self._sink = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(
                self._raw, closefd=False
            )

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._written += len(data)

    def _pad(self) -> None:
        remainder = self._written % tarfile.BLOCKSIZE
        if remainder:
            self._write(_NUL * (tarfile.BLOCKSIZE - remainder))

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the blob is already in the archive."""
        return self._blobs.get(str(desc.digest)) == desc.size

    @storage_boundary
    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Append the blob as a member, hashed as it goes; a mismatch aborts the archive."""
        async with self._lock:
            if await self.blob_exists(desc):
                return
            self._write(_header(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}", desc.size))
            await receive(desc, source, self._write, self.retry)
            self._pad()
            self._blobs[str(desc.digest)] = desc.size

    @storage_boundary
    async def manifest_put(self, manifest: ManifestLike) -> Descriptor:
        """Append a manifest after checking every blob it names is already in the archive."""
        for child in manifest.children:
            if not (child.is_foreign) and not await self.blob_exists(child):
                raise BlobNotFound(
                    f"cannot store manifest {manifest.digest}: {child.digest} is missing"
                )
        desc = manifest.descriptor()

        async def data(offset: int) -> AsyncGenerator[bytes, None]:
            yield manifest.raw[offset:]

        await self.blob_put(desc, data)
        return desc

    @storage_boundary
    async def image_put(self, manifest: ManifestLike, tag: str | None) -> Descriptor:
        """Store the manifest and list it in the index (skopeo's naming semantics)."""
        desc = await self.manifest_put(manifest)
        entry: dict[str, Any] = {
            "mediaType": desc.media_type,
            "digest": str(desc.digest),
            "size": desc.size,
        }
        if tag:
            entry["annotations"] = {index_file.REF_NAME: tag}
        self._entries = index_file.add_entry(self._entries, entry)
        return desc

    async def tags(self) -> AsyncIterator[str]:
        """The names written so far."""
        for entry in self._entries:
            name = index_file.ref_name_of(entry)
            if name:
                yield name

    @storage_boundary
    async def finish(self) -> None:
        """Append `oci-layout` and `index.json`, end the tar, fsync, rename into place."""
        index = index_file.empty_index()
        index["manifests"] = self._entries
        for name, data in (
            ("oci-layout", index_file.OCI_LAYOUT_BYTES),
            ("index.json", index_file.serialize(index)),
        ):
            self._write(_header(name, len(data)))
            self._write(data)
            self._pad()
        self._write(_NUL * (2 * tarfile.BLOCKSIZE))
        remainder = self._written % tarfile.RECORDSIZE
        if remainder:
            self._write(_NUL * (tarfile.RECORDSIZE - remainder))
        await finish_in_thread(self._close)  # cancelled: the thread ends before abort
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def _close(self) -> None:
        if self._sink is not self._raw:
            self._sink.flush(zstandard.FLUSH_FRAME)
            self._sink.close()
        assert self._raw is not None
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()

    async def abort(self) -> None:
        """Drop the half-written archive."""
        if self._raw is not None and not self._raw.closed:
            self._raw.close()
        self._tmp.unlink(missing_ok=True)
