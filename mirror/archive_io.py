"""Archives as endpoints without a copy on disk: a plain `.tar` is read in place (members are
found by their offsets), and a copy into `oci-archive:` is written straight into the tar stream.

Writing appends each blob as a tar member while hashing it; a blob that does not verify aborts
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

import aiofiles
import zstandard

from mirror import mediatypes as mt
from mirror.archive import MAX_TOP_FILE, SafeTarInfo, named_members
from mirror.digest import Digest, DigestHasher, check_content, verify_whole
from mirror.endpoint import BlobSource
from mirror.errors import (
    BlobNotFound,
    LayoutError,
    ManifestInvalid,
    ManifestNotFound,
    SizeMismatch,
    UnsupportedOperation,
)
from mirror.fsutil import fsync_dir, temp_name
from mirror.layout import LayoutImage, index_file
from mirror.layout.store import OCI_LAYOUT_BYTES, NamedImages, resolve_among
from mirror.model import Descriptor, ManifestLike, parse_manifest
from mirror.retry import RetryPolicy

__all__ = ["ArchiveReader", "ArchiveWriter"]

_CHUNK = 1024 * 1024
_NUL = b"\0"


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(tarfile.PAX_FORMAT)


class ArchiveReader(NamedImages):
    """A plain `.tar` layout archive read in place (read-only endpoint)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, tuple[int, int]] = {}
        self._index: dict[str, Any] = {}

    @classmethod
    async def open(cls, path: Path) -> ArchiveReader:
        """Index the archive's members (headers only) and read its `index.json`."""
        reader = cls(path)
        await asyncio.to_thread(reader._scan)
        return reader

    def _scan(self) -> None:
        try:
            with tarfile.open(self.path, "r:", tarinfo=SafeTarInfo) as tar:
                for member, target in named_members(tar):
                    self._members[target] = (member.offset_data, member.size)
        except tarfile.TarError as exc:
            raise LayoutError(f"archive {self.path} is truncated or not a tar: {exc}") from None
        end = max((o + s for o, s in self._members.values()), default=0)
        if end > self.path.stat().st_size:
            raise LayoutError(f"archive {self.path} is truncated")
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

    async def images(self) -> list[LayoutImage]:
        """Every entry of the archive's `index.json`."""
        out = []
        for i, entry in enumerate(self._index["manifests"]):
            desc = Descriptor.from_json(entry, f"{self.path}:index.json manifests[{i}]")
            out.append(LayoutImage(desc.ref_name, desc))
        return out

    def describe_blob(self, digest: Digest | str) -> str:
        """Where the blob lives, for messages: its member in the archive."""
        checked = Digest(digest)
        return f"archive member {self.path}:blobs/{checked.algorithm}/{checked.encoded}"

    def _locate(self, desc: Descriptor) -> tuple[int, int]:
        key = f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}"
        found = self._members.get(key)
        if found is None:
            raise BlobNotFound(f"blob {desc.digest} is not in archive {self.path}")
        if found[1] != desc.size:
            raise SizeMismatch(
                f"blob {desc.digest} in {self.path} has {found[1]} bytes, expected {desc.size}"
            )
        return found

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the archive holds the blob with that size."""
        key = f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}"
        return self._members.get(key, (0, -1))[1] == desc.size

    async def blob_open(
        self, desc: Descriptor, offset: int = 0, *, verify: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """Stream a blob from its place in the tar; verified when read whole."""
        start, size = self._locate(desc)
        raw = self._read(start + offset, size - offset)
        async for chunk in verify_whole(raw, desc, offset) if verify else raw:
            yield chunk

    async def _read(self, start: int, length: int) -> AsyncIterator[bytes]:
        async with aiofiles.open(self.path, "rb") as f:
            await f.seek(start)
            left = length
            while left > 0:
                chunk = await f.read(min(_CHUNK, left))
                if not chunk:
                    raise LayoutError(f"archive {self.path} is truncated")
                left -= len(chunk)
                yield chunk

    async def manifest_by_descriptor(self, desc: Descriptor) -> ManifestLike:
        """Read, verify and parse a manifest of the archive."""
        if desc.size > mt.MAX_MANIFEST_SIZE:
            raise ManifestInvalid(f"manifest {desc.digest} is over the 4 MiB limit")
        raw = b"".join([c async for c in self.blob_open(desc)])
        return parse_manifest(raw, desc.media_type, digest=desc.digest)

    async def resolve(self, ref: str | None = None) -> Descriptor:
        """A name, a digest, or (None) the only image."""
        return await resolve_among(await self.images(), ref, str(self.path), self._sniff)

    async def _sniff(self, digest: Digest) -> Descriptor:
        key = f"blobs/{digest.algorithm}/{digest.encoded}"
        if key not in self._members:
            raise ManifestNotFound(f"no manifest {digest} in archive {self.path}")
        probe = Descriptor("application/json", digest, self._members[key][1])
        return (await self.manifest_by_descriptor(probe)).descriptor()

    async def manifest_get(self, ref: str | None) -> ManifestLike:
        """The manifest a name or digest resolves to."""
        return await self.manifest_by_descriptor(await self.resolve(ref))

    def _read_only(self) -> UnsupportedOperation:
        return UnsupportedOperation(f"archive {self.path} is opened for reading")

    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Read-only."""
        raise self._read_only()

    async def manifest_put(self, manifest: ManifestLike) -> Descriptor:
        """Read-only."""
        raise self._read_only()

    async def image_put(self, manifest: ManifestLike, tag: str | None) -> Descriptor:
        """Read-only."""
        raise self._read_only()


class ArchiveWriter:
    """A new layout archive written as one stream (write-only endpoint)."""

    def __init__(self, path: Path, retry: RetryPolicy | None = None) -> None:
        self.path = path
        self.retry = retry or RetryPolicy()
        self._tmp = path.parent / temp_name(f".{path.name}")
        self._raw: IO[bytes] | None = None
        self._sink: Any = None
        self._written = 0
        self._blobs: dict[str, int] = {}
        self._entries: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

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

    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Append the blob as a member, hashed as it goes; a mismatch aborts the archive."""
        async with self._lock:
            if await self.blob_exists(desc):
                return
            self._write(_header(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}", desc.size))
            hasher, failures = DigestHasher(desc.digest.algorithm), 0
            while True:
                try:
                    async for chunk in source(hasher.size):
                        if hasher.size + len(chunk) > desc.size:
                            raise SizeMismatch(f"blob {desc.digest}: more than {desc.size} bytes")
                        await asyncio.to_thread(self._write, chunk)
                        hasher.update(chunk)
                    break
                except Exception as exc:
                    failures = await self.retry.backoff(exc, failures)
            check_content(hasher, desc.digest, desc.size, "blob")
            self._pad()
            self._blobs[str(desc.digest)] = desc.size

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

    async def manifest_head(self, ref: str | None) -> Descriptor | None:
        """A new archive holds nothing before this copy."""
        return None

    async def manifest_get(self, ref: str | None) -> ManifestLike:
        """Write-only."""
        raise UnsupportedOperation(f"archive {self.path} is being written")

    def blob_open(
        self, desc: Descriptor, offset: int = 0, *, verify: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """Write-only."""
        raise UnsupportedOperation(f"archive {self.path} is being written")

    async def tags(self) -> AsyncIterator[str]:
        """The names written so far."""
        for entry in self._entries:
            name = index_file.ref_name_of(entry)
            if name:
                yield name

    async def finish(self) -> None:
        """Append `oci-layout` and `index.json`, end the tar, fsync, rename into place."""
        index = index_file.empty_index()
        index["manifests"] = self._entries
        for name, data in (
            ("oci-layout", OCI_LAYOUT_BYTES),
            ("index.json", index_file.serialize(index)),
        ):
            self._write(_header(name, len(data)))
            self._write(data)
            self._pad()
        self._write(_NUL * (2 * tarfile.BLOCKSIZE))
        remainder = self._written % tarfile.RECORDSIZE
        if remainder:
            self._write(_NUL * (tarfile.RECORDSIZE - remainder))
        await asyncio.to_thread(self._close)
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
