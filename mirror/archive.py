"""OCI layout archives: a tar of an image layout, plain (`.tar`) or zstd-compressed (`.tar.zst`).

Reading streams the tar once and unpacks only what a layout holds (`oci-layout`,
`index.json`, `mirror-bundle.json`, `blobs/<alg>/<hex>`), refusing links, absolute paths and
anything that would land outside the target; unknown files are skipped. Writing streams a
layout into a temporary file (multi-threaded zstd when compressed), fsyncs it and renames it
into place, so a reader never sees half an archive.
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

from mirror.digest import Digest
from mirror.errors import InvalidDigest, LayoutError
from mirror.fsutil import fsync_dir, temp_name
from mirror.layout import Layout

__all__ = [
    "RECORD",
    "archive_layout",
    "is_zstd",
    "member_target",
    "pack_layout",
    "read_record",
    "unpack_layout",
]

#: The bundle record, written first in archives mirror makes.
RECORD = "mirror-bundle.json"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_TOP_FILES = ("oci-layout", "index.json", RECORD)
_COPY_BUFFER = 1024 * 1024


def is_zstd(path: Path) -> bool:
    """True when the file starts with the zstd frame magic."""
    with open(path, "rb") as f:
        return f.read(4) == _ZSTD_MAGIC


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
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise LayoutError(f"archive {path} is truncated or not a tar: {exc}") from None
    finally:
        raw.close()


def member_target(name: str) -> str | None:
    """The layout path for a tar member name, None to skip it; LayoutError when hostile."""
    clean = name.removeprefix("./")
    if clean.startswith("/") or ".." in clean.split("/"):
        raise LayoutError(f"archive member {name!r} points outside the layout")
    if clean in _TOP_FILES:
        return clean
    parts = clean.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            Digest(f"{parts[1]}:{parts[2]}")
        except InvalidDigest:
            raise LayoutError(f"archive member {name!r} is not named by a valid digest") from None
        return clean
    return None


def unpack_layout(path: Path, dest: Path) -> None:
    """Unpack the layout in archive `path` into the empty directory `dest`, streaming once."""
    (dest / "blobs").mkdir(parents=True, exist_ok=True)
    with _open_stream(path) as tar:
        for member in tar:
            if member.isdir():
                continue
            target = member_target(member.name)
            if target is None:
                continue
            if not member.isfile():
                raise LayoutError(f"archive member {member.name!r} is not a regular file")
            source = tar.extractfile(member)
            if source is None:
                raise LayoutError(f"archive member {member.name!r} has no content")
            out = dest / target
            out.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with open(out, "wb") as f:
                while chunk := source.read(_COPY_BUFFER):
                    f.write(chunk)
                    written += len(chunk)
            if written != member.size:
                raise LayoutError(f"archive {path} is truncated in {member.name!r}")
    if not (dest / "index.json").exists() or not (dest / "oci-layout").exists():
        raise LayoutError(f"archive {path} holds no OCI image layout (no index.json/oci-layout)")


def read_record(path: Path) -> dict[str, Any] | None:
    """The bundle record of an archive mirror wrote (the first member), without unpacking."""
    with _open_stream(path) as tar:
        for member in tar:
            if member.name.removeprefix("./") == RECORD and member.isfile():
                data = tar.extractfile(member)
                if data is None:
                    return None
                try:
                    record = json.loads(data.read(64 * 1024 * 1024))
                except ValueError:
                    raise LayoutError(f"archive {path}: {RECORD} is not JSON") from None
                return record if isinstance(record, dict) else None
            if member.isfile() and member.name.removeprefix("./").startswith("blobs/"):
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
