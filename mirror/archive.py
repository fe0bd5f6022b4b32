"""OCI layout archives: a tar of an image layout, plain (`.tar`) or zstd-compressed (`.tar.zst`).

Reading checks before it unpacks: a first pass reads every header (refusing links, sparse
members, oversized header extensions, absolute paths and anything that would land outside the
target) and the top files; then only the blobs that the index, the manifests below it or the
bundle record name are unpacked, each up to its declared size. Unknown files are skipped.

Writing streams a layout into a temporary file (multi-threaded zstd when compressed), fsyncs
it and renames it into place, so a reader never sees half an archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import zstandard

from mirror import jsonutil
from mirror import mediatypes as mt
from mirror.digest import Digest
from mirror.errors import ContentError, InvalidDigest, LayoutError, MirrorError
from mirror.fsutil import create_new, fsync_dir, read_capped, temp_name
from mirror.graph import MAX_DEPTH
from mirror.layout import Layout, index_file
from mirror.model import MAX_SIZE, Descriptor, parse_manifest

__all__ = [
    "MAX_TOP_FILE",
    "RECORD",
    "SafeTarInfo",
    "archive_layout",
    "is_zstd",
    "member_target",
    "named_members",
    "pack_layout",
    "read_record",
    "unpack_layout",
]

#: The bundle record, written first in archives mirror makes.
RECORD = "mirror-bundle.json"
#: the largest `index.json`, `oci-layout` or bundle record read from an archive
MAX_TOP_FILE = 64 * 1024 * 1024
#: the largest pax or GNU long-name header extension of a member
MAX_HEADER_EXTENSION = 1024 * 1024
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_TOP_FILES = ("oci-layout", "index.json", RECORD)
_COPY_BUFFER = 1024 * 1024


def is_zstd(path: Path) -> bool:
    """True when the file starts with the zstd frame magic."""
    with open(path, "rb") as f:
        return f.read(4) == _ZSTD_MAGIC


class SafeTarInfo(tarfile.TarInfo):
    """Tar headers read with bounds: a pax or GNU long-name extension larger than
    MAX_HEADER_EXTENSION and any GNU sparse member are refused before their data is read
    (tarfile would read a whole extension into memory, and expand a sparse member)."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENSIONS and self.size > MAX_HEADER_EXTENSION:
            raise LayoutError(
                f"archive member {self.name[:100]!r} has a {self.size} byte header extension, "
                f"over the {MAX_HEADER_EXTENSION} byte limit"
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise LayoutError(f"archive member {self.name[:100]!r} is sparse; refused")
        checked: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return checked


_EXTENSIONS = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)


@contextlib.contextmanager
def _open_stream(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise LayoutError(f"cannot open archive {path}: {exc.strerror}") from None
    try:
        stream: IO[bytes] = raw
        if raw.read(4) == _ZSTD_MAGIC:
            raw.seek(0)
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        else:
            raw.seek(0)
        with tarfile.open(
            fileobj=stream, mode="r|", tarinfo=SafeTarInfo, bufsize=_COPY_BUFFER
        ) as tar:
            yield tar
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise LayoutError(f"archive {path} is truncated or not a tar: {exc}") from None
    finally:
        raw.close()


def member_target(name: str) -> str | None:
    """The layout path for a tar member name, None to skip it; LayoutError when hostile."""
    clean = name.removeprefix("./")
    if clean.startswith("/") or ".." in clean.split("/"):
        raise LayoutError(f"archive member {name[:200]!r} points outside the layout")
    if clean in _TOP_FILES:
        return clean
    parts = clean.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            Digest(f"{parts[1]}:{parts[2]}")
        except InvalidDigest:
            raise LayoutError(
                f"archive member {name[:200]!r} is not named by a valid digest"
            ) from None
        return clean
    return None


def named_members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str]]:
    """The members that stand for a layout file, each a plain regular file (no link, no
    sparse member), with their layout paths."""
    for member in tar:
        if member.isdir():
            continue
        target = member_target(member.name)
        if target is None:
            continue
        if not member.isfile() or member.issparse():
            raise LayoutError(f"archive member {member.name!r} is not a plain regular file")
        yield member, target


def _copy_member(source: IO[bytes], out: Path, size: int) -> int:
    """Copy exactly up to `size` bytes into a new file; the bytes written."""
    written = 0
    with os.fdopen(create_new(out), "wb") as f:
        while written < size and (chunk := source.read(min(_COPY_BUFFER, size - written))):
            f.write(chunk)
            written += len(chunk)
    return written


def _read_top(path: Path) -> dict[str, bytes]:
    """Pass one: every header checked, and `oci-layout`, `index.json` and the bundle
    record read (each capped); no blob is unpacked."""
    top: dict[str, bytes] = {}
    with _open_stream(path) as tar:
        for member, target in named_members(tar):
            if target not in _TOP_FILES or target in top:
                continue
            if member.size > MAX_TOP_FILE:
                raise LayoutError(
                    f"archive {path}: {target} is {member.size} bytes, "
                    f"over the {MAX_TOP_FILE} byte limit"
                )
            data = tar.extractfile(member)
            top[target] = data.read(member.size) if data is not None else b""
    return top


class _Wanted:
    """The layout files the index, the manifests and the bundle record name, with the sizes
    they declare; only these are unpacked, each up to its declared size."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.manifests: dict[str, Descriptor] = {}

    def add(self, desc: Descriptor) -> None:
        key = f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}"
        self.sizes.setdefault(key, desc.size)
        if mt.is_manifest(desc.media_type):
            self.manifests.setdefault(key, desc)

    def add_entries(self, entries: list[Any], where: str) -> None:
        for i, entry in enumerate(entries):
            try:
                self.add(Descriptor.from_json(entry, f"{where}[{i}]"))
            except (InvalidDigest, ContentError):
                continue  # an unusable entry names nothing; verify reports it


def _extract(path: Path, dest: Path, batch: dict[str, int]) -> set[str]:
    """One pass: unpack the members in `batch` whose size is the declared one."""
    written: set[str] = set()
    with _open_stream(path) as tar:
        for member, target in named_members(tar):
            if target not in batch or target in written:
                continue
            if member.size != batch[target]:
                raise LayoutError(
                    f"archive {path}: {target} is {member.size} bytes, "
                    f"but {batch[target]} are declared"
                )
            source = tar.extractfile(member)
            if source is None or _copy_member(source, dest / target, member.size) != member.size:
                raise LayoutError(f"archive {path} is truncated in {member.name!r}")
            written.add(target)
    return written


def _children(dest: Path, desc: Descriptor) -> list[Descriptor]:
    """What an unpacked manifest points at (nothing when it does not parse: verify says so)."""
    key = dest / "blobs" / desc.digest.algorithm / desc.digest.encoded
    try:
        raw = read_capped(key, mt.MAX_MANIFEST_SIZE)
        return list(parse_manifest(raw, desc.media_type, digest=desc.digest).children)
    except (OSError, MirrorError, ValueError):
        return []


def unpack_layout(path: Path, dest: Path) -> None:
    """Unpack the layout in archive `path` into the empty directory `dest`.

    Checked before unpacking: a first pass reads only headers and the top files; then only
    the members that the index, the manifests below it or the bundle record name are written,
    each up to its declared size (a pass per level of the graph that the record does not
    already name). Sparse members, oversized headers and links are refused.
    """
    top = _read_top(path)
    if "index.json" not in top or "oci-layout" not in top:
        raise LayoutError(f"archive {path} holds no OCI image layout (no index.json/oci-layout)")
    (dest / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in top.items():
        (dest / name).write_bytes(data)
    wanted = _Wanted()
    index = index_file.parse_index(top["index.json"], f"{path}:index.json")
    wanted.add_entries(index["manifests"], f"{path}:index.json manifests")
    if RECORD in top:
        for digest, size in _record_blobs(top[RECORD], path).items():
            wanted.sizes.setdefault(f"blobs/{digest.algorithm}/{digest.encoded}", size)
    done: set[str] = set()
    for _ in range(MAX_DEPTH + 2):
        batch = {k: v for k, v in wanted.sizes.items() if k not in done}
        if not batch:
            return
        for key in batch:
            (dest / key).parent.mkdir(parents=True, exist_ok=True)
        found = _extract(path, dest, batch)
        done.update(batch)
        for key in sorted(found & wanted.manifests.keys()):
            for child in _children(dest, wanted.manifests[key]):
                wanted.add(child)
    raise LayoutError(f"archive {path}: manifests nest deeper than {MAX_DEPTH} levels")


def _record_blobs(raw: bytes, path: Path) -> dict[Digest, int]:
    try:
        record = jsonutil.loads(raw)
    except ValueError:
        raise LayoutError(f"archive {path}: {RECORD} is not JSON") from None
    blobs = record.get("blobs") if isinstance(record, dict) else None
    out: dict[Digest, int] = {}
    for digest, size in (blobs or {}).items() if isinstance(blobs, dict) else ():
        try:
            checked = Digest(digest)
        except InvalidDigest:
            continue
        if isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_SIZE:
            out[checked] = size
    return out


def read_record(path: Path) -> dict[str, Any] | None:
    """The bundle record of an archive mirror wrote (the first member), without unpacking."""
    with _open_stream(path) as tar:
        for member, target in named_members(tar):
            if target == RECORD:
                if member.size > MAX_TOP_FILE:
                    raise LayoutError(f"archive {path}: {RECORD} is over the size limit")
                data = tar.extractfile(member)
                if data is None:
                    return None
                try:
                    record = jsonutil.loads(data.read(member.size))
                except ValueError:
                    raise LayoutError(f"archive {path}: {RECORD} is not JSON") from None
                return record if isinstance(record, dict) else None
            if target.startswith("blobs/"):
                return None
    return None


def pack_layout(
    layout_dir: Path,
    out: Path,
    *,
    compress: bool,
    record: dict[str, Any] | None = None,
    leave_out: frozenset[str] = frozenset(),
) -> None:
    """Write the layout at `layout_dir` as a tar (zstd when `compress`) to `out` atomically.

    `record` is written first as `mirror-bundle.json`; blobs whose digests are in
    `leave_out` are not included (delta bundles).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / temp_name(f".{out.name}")
    try:
        with open(tmp, "wb") as raw:
            sink: IO[bytes] = raw
            compressor = None
            if compress:
                compressor = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(
                    raw, closefd=False
                )
                sink = compressor
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if record is not None:
                    _add_bytes(tar, RECORD, json.dumps(record, indent=1).encode())
                for name in ("oci-layout", "index.json"):
                    _add_file(tar, layout_dir / name, name)
                for alg_dir in sorted((layout_dir / "blobs").iterdir()):
                    for blob in sorted(alg_dir.iterdir()):
                        if f"{alg_dir.name}:{blob.name}" in leave_out:
                            continue
                        _add_file(tar, blob, f"blobs/{alg_dir.name}/{blob.name}")
            if compressor is not None:
                compressor.flush(zstandard.FLUSH_FRAME)
                compressor.close()  # type: ignore[no-untyped-call]
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> None:
    with open(path, "rb") as f:
        tar.addfile(_info(name, os.fstat(f.fileno()).st_size), f)


@contextlib.asynccontextmanager
async def archive_layout(path: Path, *, write: bool) -> AsyncIterator[Layout]:
    """The layout inside an archive, as an endpoint: unpacked to a temporary directory for
    reading; for writing, a fresh layout packed into `path` only when the block succeeds
    (`.zst`/`.zstd` names are compressed). The temporary directory is always removed."""
    base = path.parent if write else None
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".mirror-archive-", dir=base))
    try:
        if write:
            layout = await Layout.open(work / "layout", create=True)
        else:
            await asyncio.to_thread(unpack_layout, path, work / "layout")
            layout = await Layout.open(work / "layout")
        async with layout:
            yield layout
        if write:
            compress = path.suffix in (".zst", ".zstd")
            await asyncio.to_thread(pack_layout, work / "layout", path, compress=compress)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
