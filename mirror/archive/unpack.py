"""Unpacking a layout archive after checking it: a first pass reads every header and the top
files; then only the blobs that the index, the manifests below it or the bundle record name
are unpacked, each up to its declared size (a pass per graph level the record does not name).
Unknown files are skipped. `unpacked` lends the result out as a layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mirror.archive.tarfiles import (
    MAX_TOP_FILE,
    RECORD,
    copies_differ,
    copy_member,
    named_members,
    open_stream,
    read_top,
    same_bytes,
)
from mirror.errors import ContentError, InvalidDigest, LayoutError, MirrorError
from mirror.graph import MAX_DEPTH
from mirror.layout import Layout, index_file
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import MAX_SIZE, Descriptor, parse_manifest
from mirror.support import jsonutil
from mirror.support.fsutil import read_capped

__all__ = ["read_record", "unpack_layout", "unpacked"]


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
    """One pass: unpack the members in `batch` whose size is the declared one; a member
    there twice must hold the same bytes twice."""
    written: set[str] = set()
    with open_stream(path) as tar:
        for member, target in named_members(tar, f"archive {path}"):
            if target not in batch:
                continue
            if member.size != batch[target]:
                raise LayoutError(
                    f"archive {path}: {target} is {member.size} bytes, "
                    f"but {batch[target]} are declared"
                )
            source = tar.extractfile(member)
            if source is None:
                raise LayoutError(f"archive {path}: {member.name!r} is not a regular file")
            if target in written:
                with open(dest / target, "rb") as first:
                    if not same_bytes(first, source, member.size):
                        raise copies_differ(f"archive {path}", target)
                continue
            if copy_member(source, dest / target, member.size) != member.size:
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
    top = read_top(path)
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
    with open_stream(path) as tar:
        for member, target in named_members(tar, f"archive {path}"):
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


@contextlib.asynccontextmanager
async def unpacked(path: Path) -> AsyncIterator[Layout]:
    """The layout inside archive `path`, unpacked into a temporary directory that is removed
    afterwards (compressed archives; a plain `.tar` is read in place by `ArchiveReader`)."""
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".mirror-archive-"))
    try:
        await asyncio.to_thread(unpack_layout, path, work / "layout")
        async with await Layout.open(work / "layout") as layout:
            yield layout
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
