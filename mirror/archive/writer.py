"""A copy into `oci-archive:` written straight into the tar stream, as a write-only endpoint.

Each blob is appended as a tar member while it is hashed; a blob that does not verify aborts
the archive (the temporary file is deleted, nothing appears under the final name). Blob writes
are serialised (a tar is one stream); `index.json` and `oci-layout` come last, then the file
is fsynced and renamed into place.

An archive that exists keeps its images, as a layout does: what it holds is read first (a
plain tar in place, a zstd one unpacked), an image it holds under the name written is up to
date, and the new file carries over, re-hashed, every blob its index still reaches (a name
moved to another image takes the old image out: nothing unnamed is kept). A copy that
changes nothing leaves the file as it was; one that fails leaves it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tarfile
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import IO, Any

import zstandard

from mirror.archive.reader import ArchiveReader
from mirror.archive.tarfiles import is_zstd
from mirror.archive.unpack import read_record, unpacked
from mirror.archive.writeonly import WriteOnly, receive
from mirror.endpoint import BlobSource, Referrers
from mirror.errors import BlobNotFound, LayoutError
from mirror.graph import Node, walk
from mirror.layout import index_file
from mirror.layout.reading import LayoutReader
from mirror.oci.digest import Digest
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
        #: the manifests this copy wrote, by digest (to walk what the new index reaches)
        self._manifests: dict[Digest, ManifestLike] = {}
        self._entries: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        #: the archive as it was (None: there was none), and its index
        self._old: LayoutReader | None = None
        self._old_index: dict[str, Any] = index_file.empty_index()
        self._stack = contextlib.AsyncExitStack()

    @storage_boundary
    async def start(self) -> None:
        """Read what an existing archive holds; create the temporary file (and the zstd
        stream for `.zst` names). A failure leaves nothing (an archive unpacked to be read
        is removed)."""
        try:
            await self._read_existing()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._raw = open(self._tmp, "wb")  # noqa: SIM115 - closed in finish/abort
            self._sink = self._raw
            if self.path.suffix in (".zst", ".zstd"):
                self._sink = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(
                    self._raw, closefd=False
                )
        except BaseException:
            await self.abort()
            raise

    async def _read_existing(self) -> None:
        """Open the archive at `path`, if there is one (an empty file is none): a file that
        is no layout archive, or a bundle, is refused, never replaced."""
        try:
            if self.path.stat().st_size == 0:
                return
        except FileNotFoundError:
            return
        if await asyncio.to_thread(is_zstd, self.path):
            self._old = await self._stack.enter_async_context(unpacked(self.path))
        else:
            self._old = await ArchiveReader.open(self.path)
        if await asyncio.to_thread(read_record, self.path) is not None:
            raise LayoutError(
                f"archive {self.path} is a bundle (mirror bundle create): "
                "copy single images into another file"
            )
        self._old_index = await self._old.read_index()
        self._entries = [dict(e) for e in self._old_index["manifests"]]

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._written += len(data)

    def _pad(self) -> None:
        remainder = self._written % tarfile.BLOCKSIZE
        if remainder:
            self._write(_NUL * (tarfile.BLOCKSIZE - remainder))

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the blob is already in the archive (written now, or there before)."""
        if self._blobs.get(str(desc.digest)) == desc.size:
            return True
        return self._old is not None and self._old.stored_size(desc.digest) == desc.size

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """What an image name (or digest) points at in the archive as it will be: written
        by this copy, or there before."""
        if ref is None:
            return None
        for entry in self._entries:
            if index_file.ref_name_of(entry) == ref:
                return Descriptor.from_json(entry, f"{self.where}: index.json")
        return None if self._old is None else await self._old.manifest_head(ref)

    async def referrers(self, subject: Digest) -> Referrers:
        """The referrers the archive listed before this copy (empty for a new one)."""
        return Referrers() if self._old is None else await self._old.referrers(subject)

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
        self._manifests[desc.digest] = manifest
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
        # a name that moves takes the old image out of the archive (nothing kept unnamed)
        self._entries = index_file.add_entry(self._entries, entry)
        return desc

    async def tags(self) -> AsyncIterator[str]:
        """The names the archive will hold."""
        for entry in self._entries:
            name = index_file.ref_name_of(entry)
            if name:
                yield name

    @storage_boundary
    async def finish(self) -> None:
        """Carry over what the new index reaches of the archive as it was; append
        `oci-layout` and `index.json`, end the tar, fsync, rename into place. A copy that
        changed nothing (an image up to date) leaves the archive as it was."""
        if (
            self._old is not None
            and not self._blobs
            and self._entries == self._old_index["manifests"]
        ):
            await self.abort()
            return
        await self._carry_over()
        index = dict(self._old_index)
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
        await self._stack.aclose()

    async def _carry_over(self) -> None:
        """Append, hashed as they go, the blobs of the archive as it was that the new index
        reaches (its manifests read from there or from this copy) and this copy did not
        write: an image whose name moved away is left behind."""
        old = self._old
        if old is None:
            return
        reached: list[Descriptor] = []

        async def visit(node: Node) -> ManifestLike | None:
            reached.append(node.desc)
            if not node.is_manifest:
                return None
            written = self._manifests.get(node.desc.digest)
            return written or await old.manifest_by_descriptor(node.desc)

        roots = [
            Node(Descriptor.from_json(e, f"{self.where}: index.json"), f"{self.where}: index.json")
            for e in self._entries
        ]
        await walk(roots, visit)
        for desc in reached:
            if str(desc.digest) in self._blobs or old.stored_size(desc.digest) != desc.size:
                continue  # written by this copy, or never stored (a foreign layer)
            self._write(_header(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}", desc.size))
            await receive(desc, _reading(old, desc), self._write, self.retry)
            self._pad()
            self._blobs[str(desc.digest)] = desc.size

    def _close(self) -> None:
        if self._sink is not self._raw:
            self._sink.flush(zstandard.FLUSH_FRAME)
            self._sink.close()
        assert self._raw is not None
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()

    async def abort(self) -> None:
        """Drop the half-written archive (the one there before stays as it was)."""
        if self._raw is not None and not self._raw.closed:
            self._raw.close()
        self._tmp.unlink(missing_ok=True)
        await self._stack.aclose()


def _reading(store: LayoutReader, desc: Descriptor) -> BlobSource:
    """A stored blob's bytes from an offset, unverified (the writer hashes what it writes)."""

    def read(offset: int) -> AsyncGenerator[bytes, None]:
        return store.blob_open(desc, offset, verify=False)

    return read
