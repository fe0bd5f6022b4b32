"""An OCI image layout directory that never lies about what it holds.

Blobs are streamed into `.mirror/tmp/`, hashed while written, checked against digest and
size, fsynced and renamed into `blobs/<alg>/<hex>`. `index.json` is changed only under an
exclusive lock on `.mirror/index.lock` and replaced atomically. A process that writes holds
`.mirror/writers.lock` shared until it closes the layout, so that `gc` (which takes it
exclusively) never deletes blobs that a running writer has not yet referenced.

Over 400 lines on purpose: the write path (opening and creating, blobs, manifests, the index
under its lock) is one protocol whose steps depend on each other's order; it reads best whole.
The read path is `mirror/layout/reading.py`, resumable writes `partial.py` and `ranged.py`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from mirror.endpoint import (
    BlobSource,
    RangeFetcher,
    RangeNotHonoured,
    StoredBlobs,
    bytes_source,
)
from mirror.errors import (
    BlobNotFound,
    LayoutError,
    ManifestNotFound,
    MirrorError,
    SizeMismatch,
)
from mirror.layout import index_file
from mirror.layout.attachments import orphaned_attachments
from mirror.layout.discard import discard_unused
from mirror.layout.partial import fill_partial, lock_partial, read_small
from mirror.layout.ranged import fill_ranged
from mirror.layout.reading import CHUNK_SIZE, BlobSpan, LayoutReader, close_on_error
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest, DigestHasher, check_content
from mirror.oci.model import Descriptor, Index, ManifestLike
from mirror.retry import RetryPolicy
from mirror.support import jsonutil
from mirror.support.fsutil import (
    FileLock,
    create_new,
    fsync_dir,
    open_regular,
    read_capped,
    real_dir,
    regular_size,
    temp_name,
    write_atomic,
)
from mirror.support.oserrors import storage_boundary
from mirror.support.tasks import finish_in_thread

__all__ = ["Layout", "check_file"]

_log = logging.getLogger("mirror.layout")
#: blobs up to this size are written in one go, without a resumable partial file
SMALL_BLOB = 1024 * 1024
STATE_DIR = ".mirror"
#: the most `index.json` (and `oci-layout`) may hold; a larger one is refused unread
MAX_INDEX_SIZE = 64 * 1024 * 1024


class Layout(LayoutReader, StoredBlobs):
    """An OCI image layout on disk. Open with `await Layout.open(path, create=...)`."""

    def __init__(self, path: Path, retry: RetryPolicy | None = None) -> None:
        self.path = path
        self.where = f"layout {path}"
        self._blobs = os.fspath(path / "blobs")
        self._state = path / STATE_DIR
        self._writer_fd: int | None = None
        self._writer_guard = asyncio.Lock()
        #: how transfers into this layout retry a failing source (the run's policy)
        self.retry = retry or RetryPolicy()
        self._dirty_dirs: set[Path] = set()
        #: opened to be created, and nothing written yet: nothing exists on disk
        self._pending = False
        #: made on disk by this object (a failed write takes it away: `discard.py`), with the
        #: folders it made for it, deepest first
        self._made: list[Path] | None = None
        #: how many images that lost their last name `index.json` keeps, per repository
        self.retention = index_file.Retention()
        #: what each index read for `_listed_by` lists (a digest's content never changes)
        self._children: dict[str, list[dict[str, Any]]] = {}

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        retry: RetryPolicy | None = None,
    ) -> Layout:
        """Open the layout at `path`; with `create`, make it (or an empty directory) one;
        `retry` is how writes into it retry a failing source (the run's policy).

        A new layout is made on disk only when the first blob is about to be written, so a
        copy that fails before that leaves nothing behind. An existing layout opened with
        `create` holds the shared writers' lock from now until `aclose`, so that `gc` never
        deletes a blob this writer has found present but not yet named in `index.json`.
        """
        layout = cls(Path(path), retry)
        if create and not await asyncio.to_thread(os.path.lexists, layout.path / "oci-layout"):
            await asyncio.to_thread(layout._check_new)
            layout._pending = True
            return layout
        await asyncio.to_thread(layout._check)
        if create:
            await layout._begin_writing()
        return layout

    def _check_new(self) -> None:
        """Refuse a directory that holds anything but a (partly made) layout."""
        allowed = {STATE_DIR, "blobs", "index.json", "oci-layout"}
        if self.path.exists() and not self.path.is_dir():
            raise LayoutError(f"{self.path} is not a directory")
        if self.path.is_dir() and any(p.name not in allowed for p in self.path.iterdir()):
            raise LayoutError(f"{self.path} is not empty and not an OCI image layout")

    def _prepare_new(self) -> None:
        self._check_new()
        missing, folder = [], self.path.absolute()
        while not os.path.lexists(folder):
            missing.append(folder)
            folder = folder.parent
        self.path.mkdir(parents=True, exist_ok=True)
        self._made = missing
        self._ensure_state_dir()

    async def _materialise(self) -> None:
        """Make a layout opened for creation exist on disk (once)."""
        if self._pending:
            await asyncio.to_thread(self._prepare_new)
            async with self.index_lock().hold():
                await asyncio.to_thread(self._initialise)
            await asyncio.to_thread(self._check)
            self._pending = False

    def _initialise(self) -> None:
        # index.json first, the oci-layout marker last: a layout is complete once it is marked.
        real_dir(self.path / "blobs", create=True)
        real_dir(self.path / "blobs" / "sha256", create=True)
        if not os.path.lexists(self.path / "index.json"):
            data = index_file.serialize(index_file.empty_index())
            write_atomic(self.path / "index.json", data, self._tmp_dir)
        if not os.path.lexists(self.path / "oci-layout"):
            write_atomic(self.path / "oci-layout", index_file.OCI_LAYOUT_BYTES, self._tmp_dir)

    def _check(self) -> None:
        marker = self.path / "oci-layout"
        if not os.path.lexists(marker):
            what = "does not exist" if not self.path.exists() else "has no oci-layout file"
            raise LayoutError(f"{self.path} is not an OCI image layout: it {what}")
        self._check_marker(marker)
        if not os.path.lexists(self.path / "index.json"):
            raise LayoutError(f"{self.path}/index.json is missing")
        for directory in (self._state, self._tmp_dir, self._state / "partial"):
            real_dir(directory)
        blobs = self.path / "blobs"
        real_dir(blobs)
        if blobs.is_dir():
            for entry in os.scandir(blobs):
                real_dir(Path(entry.path))

    def _check_marker(self, marker: Path) -> None:
        try:
            obj = jsonutil.loads(read_capped(marker, MAX_INDEX_SIZE))
        except (OSError, ValueError) as exc:
            raise LayoutError(f"{marker} is unreadable or not JSON ({exc})") from None
        version = obj.get("imageLayoutVersion") if isinstance(obj, dict) else None
        if version != "1.0.0":
            raise LayoutError(f"{marker}: unsupported imageLayoutVersion {version!r}")

    async def aclose(self) -> None:
        """Flush pending directory entries, release the writer lock; do not use it afterwards."""
        await self.sync_blobs()
        if self._writer_fd is not None:
            FileLock.release(self._writer_fd)
            self._writer_fd = None

    async def __aenter__(self) -> Layout:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close; after a failure, take away a layout this object made when nothing in it is
        worth keeping (no image named, no large blob whole or in part: `discard.py`)."""
        await self.aclose()
        if e is not None and self._made is not None:
            made, self._made = self._made, None
            await finish_in_thread(discard_unused, self.path, made, SMALL_BLOB, MAX_INDEX_SIZE)

    # -- paths and locks ----------------------------------------------------------------

    @property
    def _tmp_dir(self) -> Path:
        return self._state / "tmp"

    def _ensure_state_dir(self) -> None:
        for directory in (self._state, self._tmp_dir, self._state / "partial"):
            real_dir(directory, create=True)

    def describe_blob(self, digest: Digest | str) -> str:
        """Where the blob lives, for messages: its file in the layout."""
        return f"layout file {self.blob_path(digest)}"

    def blob_path(self, digest: Digest | str) -> Path:
        """Where the blob with `digest` lives; the digest is validated before any path is made."""
        return Path(self._blob_file(digest))

    def _blob_file(self, digest: Digest | str) -> str:
        checked = Digest(digest)
        return f"{self._blobs}/{checked.algorithm}/{checked.encoded}"

    def index_lock(self) -> FileLock:
        """The lock held while `index.json` is read, changed and replaced."""
        return FileLock(self._state / "index.lock")

    def writers_lock(self) -> FileLock:
        """Held shared by writers while they have unreferenced blobs; exclusive by gc."""
        return FileLock(self._state / "writers.lock")

    @property
    def is_writing(self) -> bool:
        """True while this object holds the shared writers lock (from its first write on)."""
        return self._writer_fd is not None

    @storage_boundary
    async def prepare_writes(self) -> None:
        """Create the `.mirror/` state directory (lock files, temporary files)."""
        async with self._writer_guard:
            await self._materialise()
        await asyncio.to_thread(self._ensure_state_dir)

    async def _begin_writing(self) -> None:
        async with self._writer_guard:
            await self._materialise()
            if self._writer_fd is None:
                await asyncio.to_thread(self._ensure_state_dir)
                self._writer_fd = await self.writers_lock().acquire(shared=True)

    # -- blobs --------------------------------------------------------------------------

    def stored_size(self, digest: Digest) -> int | None:
        """The size of the regular file `blobs/<alg>/<hex>` (a link or anything else: None)."""
        # one lstat of a local path: cheaper inline than a trip to a worker thread
        return regular_size(self._blob_file(digest))

    async def open_span(self, desc: Descriptor) -> BlobSpan:
        """Open the blob's file (never through a link); its size must be the descriptor's."""
        path = self.blob_path(desc.digest)
        try:
            fd = await asyncio.to_thread(open_regular, path)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {desc.digest} is not in layout {self.path}") from None

        def check() -> None:
            size = os.fstat(fd).st_size
            if size != desc.size:
                raise SizeMismatch(
                    f"blob {desc.digest} in {self.path} has {size} bytes, expected {desc.size}"
                )

        return BlobSpan(close_on_error(fd, check), 0)

    @storage_boundary
    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Store a blob; it becomes visible under `blobs/` only once digest and size match.

        Bytes go to `.mirror/partial/<alg>-<hex>` first. A retryable failure continues from
        the bytes already written; a killed process leaves the partial for the next run to
        re-hash and resume. Content that does not verify is never installed.
        """
        final = self.blob_path(desc.digest)
        if await self.blob_exists(desc):
            return
        await self._begin_writing()
        if desc.size <= SMALL_BLOB:
            await self._put_small(desc, source, final)
            return
        partial = self._state / "partial" / f"{desc.digest.algorithm}-{desc.digest.encoded}"
        fd = await lock_partial(partial)
        try:
            if await self.blob_exists(desc):  # another writer finished it while we waited
                await asyncio.to_thread(partial.unlink, missing_ok=True)
                return
            await fill_partial(fd, desc, source, self.retry)
            await asyncio.to_thread(self._install, partial, final)
        finally:
            os.close(fd)

    @storage_boundary
    async def blob_put_ranged(
        self,
        desc: Descriptor,
        fetch: RangeFetcher,
        *,
        part_size: int,
        parallel: int,
        fallback: BlobSource,
    ) -> None:
        """Store a large blob fetched as parallel ranges; `fallback` streams it whole when the
        server ignores Range. Resumable across runs by part; verified as one before install."""
        final = self.blob_path(desc.digest)
        if await self.blob_exists(desc):
            return
        await self._begin_writing()
        partial = self._state / "partial" / f"{desc.digest.algorithm}-{desc.digest.encoded}.ranged"
        sidecar = partial.with_name(partial.name + ".ranges")
        fd = await lock_partial(partial)
        ignored = False
        try:
            if await self.blob_exists(desc):  # another writer finished it while we waited
                await asyncio.to_thread(partial.unlink, missing_ok=True)
            else:
                await fill_ranged(
                    fd,
                    sidecar,
                    self._tmp_dir,
                    desc,
                    fetch,
                    part_size=part_size,
                    parallel=parallel,
                    retry=self.retry,
                )
                await asyncio.to_thread(self._install, partial, final)
        except RangeNotHonoured:
            _log.info("the source ignores Range: fetching %s as one stream", desc.digest)
            ignored = True
        finally:
            os.close(fd)
        if ignored:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            await asyncio.to_thread(sidecar.unlink, missing_ok=True)
            await self.blob_put(desc, fallback)

    async def _put_small(self, desc: Descriptor, source: BlobSource, final: Path) -> None:
        """Small blobs: gather in memory (retrying from 0), then one worker-thread call writes,
        verifies, fsyncs and renames them; nothing is worth resuming."""
        chunks = await read_small(source, desc, self.retry)
        tmp = self._tmp_dir / temp_name(f"blob-{desc.digest.encoded[:12]}")
        await asyncio.to_thread(_store_small, chunks, desc, tmp, final)
        self._dirty_dirs.add(final.parent)

    def _install(self, tmp: Path, final: Path) -> None:
        real_dir(final.parent, create=True)
        os.replace(tmp, final)
        self._dirty_dirs.add(final.parent)

    @storage_boundary
    async def sync_blobs(self) -> None:
        """Make the renames of blobs stored so far durable (before anything names them)."""
        dirty, self._dirty_dirs = self._dirty_dirs, set()
        for directory in dirty:
            await asyncio.to_thread(fsync_dir, directory)

    @storage_boundary
    async def blob_put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store small in-memory content and return its descriptor."""
        desc = Descriptor(media_type, Digest.of(data), len(data))
        await self.blob_put_bytes_as(desc, data)
        return desc

    # -- manifests and images -----------------------------------------------------------

    @storage_boundary
    async def manifest_put(self, manifest: ManifestLike) -> Descriptor:
        """Store a manifest's exact bytes after checking every blob it points at is present."""
        for child in manifest.children:
            if child.is_foreign:
                continue
            if not await self.blob_exists(child):
                raise BlobNotFound(
                    f"cannot store manifest {manifest.digest}: "
                    f"{child.media_type} {child.digest} is not in the layout"
                )
        desc = manifest.descriptor()
        await self.blob_put_bytes_as(desc, manifest.raw)
        return desc

    @storage_boundary
    async def blob_put_bytes_as(self, desc: Descriptor, data: bytes) -> None:
        """Store in-memory content under an expected descriptor (verified)."""
        await self.blob_put(desc, bytes_source(data))

    async def read_index(self) -> dict[str, Any]:
        """The parsed `index.json` (raises LayoutError when it is damaged)."""
        where = f"{self.path}/index.json"
        if self._pending:
            return index_file.empty_index()
        try:
            raw = await asyncio.to_thread(read_capped, self.path / "index.json", MAX_INDEX_SIZE)
        except FileNotFoundError:
            raise LayoutError(f"{where} is missing") from None
        return index_file.parse_index(raw, where)

    @storage_boundary
    async def add_image(
        self, desc: Descriptor, name: str | None = None, annotations: dict[str, str] | None = None
    ) -> None:
        """List a stored manifest in `index.json`, optionally under `name`; an image that had
        the name is untagged (`index_file.untag`, under `self.retention`)."""
        if not await self.blob_exists(desc):
            raise BlobNotFound(f"cannot list {desc.digest}: its manifest is not in the layout")
        entry: dict[str, Any] = {
            "mediaType": desc.media_type,
            "digest": str(desc.digest),
            "size": desc.size,
        }
        merged = dict(annotations or {})
        if name is not None:
            merged[index_file.REF_NAME] = name
        if merged:
            entry["annotations"] = merged
        if desc.platform is not None:
            entry["platform"] = desc.platform.to_json()
        await self._edit_index(
            lambda entries: index_file.list_entry(entries, entry, self.retention, _now())
        )

    @storage_boundary
    async def remove_image(self, name: str) -> tuple[str, ...]:
        """Take the name `name` off its image, which is untagged (`index_file.untag`); the
        names that left `index.json`: `name` and the fallback and digest tags that went with
        the image. Its blobs stay until `gc`."""
        edited = await self._edit_index(
            lambda entries: index_file.remove_named(entries, name, self.retention, _now())
        )
        if not edited.unnamed:
            raise ManifestNotFound(f"no image named {name!r} in layout {self.path}")
        return (name, *_names(e for e in edited.departed if index_file.ref_name_of(e) != name))

    @storage_boundary
    async def remove_manifest(self, digest: Digest) -> tuple[str, ...]:
        """Drop every `index.json` entry of `digest` and the fallback and digest tags that
        go with it; the names that left. Its blobs stay until `gc`."""
        edited = await self._edit_index(
            lambda entries: index_file.remove_digest(entries, str(digest))
        )
        if not any(e.get("digest") == str(digest) for e in edited.departed):
            raise ManifestNotFound(f"no image {digest} in layout {self.path}")
        return tuple(_names(edited.departed))

    @storage_boundary
    async def tag_delete(self, tag: str) -> None:
        """Take the name `tag` off its image (the endpoint verb; see `remove_image`)."""
        await self.remove_image(tag)

    @storage_boundary
    async def manifest_delete(self, digest: Digest) -> None:
        """Drop the manifest `digest` from `index.json` (see `remove_manifest`)."""
        await self.remove_manifest(digest)

    @storage_boundary
    async def update_index(
        self, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    ) -> None:
        """Read-modify-write `index.json` under the cross-process lock, replaced atomically."""
        await self._edit_index(lambda entries: index_file.Edited(edit(entries), [], []))

    async def _edit_index(
        self, edit: Callable[[list[dict[str, Any]]], index_file.Edited]
    ) -> index_file.Edited:
        """`update_index` for edits that take images out: the fallback and digest tags that go
        with what left (`attachments.py`) leave in the same replacement of `index.json`."""
        await self._begin_writing()
        await self.sync_blobs()  # blobs and manifests are durable before the index names them
        async with self.index_lock().hold():
            index = await self.read_index()
            edited = edit(index["manifests"])
            if edited.departed:
                doomed = await orphaned_attachments(
                    edited.entries, edited.departed, self._listed_by
                )
                edited = index_file.Edited(
                    [e for i, e in enumerate(edited.entries) if i not in doomed],
                    edited.departed + [e for i, e in enumerate(edited.entries) if i in doomed],
                    edited.unnamed,
                )
            index["manifests"] = edited.entries
            data = index_file.serialize(index)
            await asyncio.to_thread(write_atomic, self.path / "index.json", data, self._tmp_dir)
        return edited

    async def _listed_by(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """The manifests an index entry lists (none for an image, nor for an index that cannot
        be read: what it lists is then unknown, and nothing is taken for it)."""
        if entry.get("mediaType") not in mt.INDEXES:
            return []
        digest = str(entry.get("digest"))
        if digest not in self._children:
            try:
                desc = Descriptor.from_json(entry, "index.json entry")
                manifest = await self.manifest_by_descriptor(desc)
            except (MirrorError, ValueError):
                return []
            listed = manifest.manifests if isinstance(manifest, Index) else ()
            self._children[digest] = [d.to_json() for d in listed]
        return self._children[digest]

    @storage_boundary
    async def image_put(self, manifest: ManifestLike, tag: str | None = None) -> Descriptor:
        """Store a manifest (its blobs must be present) and list it under the name `tag`."""
        desc = await self.manifest_put(manifest)
        await self.add_image(desc, tag)
        return desc


def _now() -> str:
    """The time an image is untagged, as `index.json` records it (RFC 3339, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _names(entries: Iterable[dict[str, Any]]) -> list[str]:
    return [name for e in entries if (name := index_file.ref_name_of(e)) is not None]


def _hash_file(path: Path, algorithm: str, size: int) -> DigestHasher:
    """Hash at most `size` + 1 bytes of a regular file (one more tells a longer file)."""
    hasher = DigestHasher(algorithm)
    with os.fdopen(open_regular(path), "rb") as f:
        left = size + 1
        while left > 0 and (chunk := f.read(min(CHUNK_SIZE, left))):
            hasher.update(chunk)
            left -= len(chunk)
    return hasher


def _store_small(chunks: list[bytes], desc: Descriptor, tmp: Path, final: Path) -> None:
    hasher = DigestHasher(desc.digest.algorithm)
    for chunk in chunks:
        hasher.update(chunk)
    check_content(hasher, desc.digest, desc.size, "blob")
    try:
        with os.fdopen(create_new(tmp), "wb") as f:
            f.writelines(chunks)
            f.flush()
            os.fsync(f.fileno())
        real_dir(final.parent, create=True)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_file(path: Path, digest: Digest, size: int) -> None:
    """Re-hash one stored blob and raise on a mismatch."""
    check_content(_hash_file(path, digest.algorithm, size), digest, size, "blob")
