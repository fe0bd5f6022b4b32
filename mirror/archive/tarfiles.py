"""Reading tar archives from elsewhere with bounds: every header checked (no links, sparse
members, oversized header extensions, absolute paths or `..`), only the members that stand for
layout files, the top files (`oci-layout`, `index.json`, the bundle record) read capped.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tarfile
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import zstandard

from mirror.errors import InvalidDigest, LayoutError
from mirror.oci.digest import Digest
from mirror.support.fsutil import create_new

__all__ = [
    "MAX_MEMBERS",
    "MAX_TOP_FILE",
    "RECORD",
    "MemberCount",
    "SafeTarInfo",
    "copies_differ",
    "copy_member",
    "headers",
    "is_compressed",
    "is_zstd",
    "member_target",
    "named_members",
    "open_stream",
    "read_top",
    "same_bytes",
    "seen_before",
]

#: The bundle record, written first in archives mirror makes.
RECORD = "mirror-bundle.json"
#: the largest `index.json`, `oci-layout` or bundle record read from an archive
MAX_TOP_FILE = 64 * 1024 * 1024
#: the most members one pass over an archive indexes (layout files; a docker archive's files
#: and links), and the most it reads past (directories, files nothing names)
MAX_MEMBERS = 100_000
#: the largest pax or GNU long-name header extension of a member, and of an archive's global
#: pax extensions in all
MAX_HEADER_EXTENSION = 1024 * 1024
#: the most header extensions (pax, GNU long names) before one member
MAX_EXTENSION_CHAIN = 8
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
_TOP_FILES = ("oci-layout", "index.json", RECORD)
_COPY_BUFFER = 1024 * 1024


def is_zstd(path: Path) -> bool:
    """True when the file starts with the zstd frame magic."""
    with open(path, "rb") as f:
        return f.read(4) == _ZSTD_MAGIC


def is_compressed(path: Path) -> bool:
    """True when the file starts with the zstd frame magic or the gzip magic."""
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic == _ZSTD_MAGIC or magic.startswith(_GZIP_MAGIC)


class SafeTarInfo(tarfile.TarInfo):
    """Tar headers read with bounds: a pax or GNU long-name extension larger than
    MAX_HEADER_EXTENSION and any GNU sparse member are refused before their data is read
    (tarfile would read a whole extension into memory, and expand a sparse member); so are
    more than MAX_EXTENSION_CHAIN extensions before one member (tarfile reads them by
    recursion) and global pax extensions over MAX_HEADER_EXTENSION in all (tarfile keeps
    every global record to the end of the archive)."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENSIONS and self.size > MAX_HEADER_EXTENSION:
            raise LayoutError(
                f"archive member {self.name[:100]!r} has a {self.size} byte header extension, "
                f"over the {MAX_HEADER_EXTENSION} byte limit"
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise LayoutError(f"archive member {self.name[:100]!r} is sparse; refused")
        _count_extension(tar, self)
        checked: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return checked


class _Extensions:
    """The header extensions of one archive read so far: in a row, and global in all."""

    def __init__(self) -> None:
        self.in_a_row = 0
        self.global_bytes = 0


_extensions: weakref.WeakKeyDictionary[tarfile.TarFile, _Extensions] = weakref.WeakKeyDictionary()


def _count_extension(tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
    seen = _extensions.setdefault(tar, _Extensions())
    if info.type not in _EXTENSIONS:
        seen.in_a_row = 0
        return
    seen.in_a_row += 1
    if seen.in_a_row > MAX_EXTENSION_CHAIN:
        raise LayoutError(
            f"archive member {info.name[:100]!r}: more than {MAX_EXTENSION_CHAIN} header "
            f"extensions in a row; refused"
        )
    if info.type == tarfile.XGLTYPE:
        seen.global_bytes += info.size
        if seen.global_bytes > MAX_HEADER_EXTENSION:
            raise LayoutError(
                f"archive member {info.name[:100]!r}: the archive's global header extensions "
                f"are over the {MAX_HEADER_EXTENSION} byte limit in all"
            )


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
def open_stream(path: Path) -> Iterator[tarfile.TarFile]:
    """The archive as a tar stream, read forward only: a zstd or gzip file decompressed as it
    is read (each read bounded, however well it compresses), nothing written anywhere."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise LayoutError(f"cannot open archive {path}: {exc.strerror}") from None
    try:
        stream: IO[bytes] | gzip.GzipFile = raw
        magic = raw.read(4)
        raw.seek(0)
        if magic == _ZSTD_MAGIC:
            unzstd = zstandard.ZstdDecompressor()
            stream = unzstd.stream_reader(raw, read_size=_COPY_BUFFER, read_across_frames=True)
        elif magic.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        with tarfile.open(
            fileobj=stream, mode="r|", tarinfo=SafeTarInfo, bufsize=_COPY_BUFFER
        ) as tar:
            yield tar
    except (tarfile.TarError, zstandard.ZstdError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
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


class MemberCount:
    """The members one pass over an archive has indexed and read past; LayoutError past
    MAX_MEMBERS of either (tarfile would keep them all, and each pass would take longer)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.indexed = 0
        self.skipped = 0

    def index(self) -> None:
        """One more member that can matter (a layout file, a docker archive's file or link)."""
        self.indexed += 1
        if self.indexed > MAX_MEMBERS:
            raise LayoutError(
                f"{self.where} holds more than {MAX_MEMBERS} members it could use; refused"
            )

    def skip(self) -> None:
        """One more member read past (a directory, a file nothing names)."""
        self.skipped += 1
        if self.skipped > MAX_MEMBERS:
            raise LayoutError(
                f"{self.where} holds more than {MAX_MEMBERS} members it has no use for; refused"
            )


def headers(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Each member's header in archive order, none kept (tarfile keeps every member it reads,
    as `TarFile.members`: each pass drops them as it goes)."""
    while (member := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # the list is not in the stubs
        yield member


def named_members(tar: tarfile.TarFile, where: str) -> Iterator[tuple[tarfile.TarInfo, str]]:
    """The members that stand for a layout file, each a plain regular file (no link, no
    sparse member), with their layout paths; LayoutError (naming `where`) past MAX_MEMBERS
    of them or of the members skipped."""
    count = MemberCount(where)
    for member in headers(tar):
        target = None if member.isdir() else member_target(member.name)
        if target is None:
            count.skip()
            continue
        count.index()
        if not member.isfile() or member.issparse():
            raise LayoutError(f"archive member {member.name!r} is not a plain regular file")
        yield member, target


def seen_before(where: str, target: str, size: int, seen: dict[str, int]) -> bool:
    """Whether this pass met `target` before (its sizes kept in `seen`): then its bytes are
    to be compared with the first copy's. LayoutError for a top file twice (readers would
    differ on which one counts) or a blob twice at another size."""
    if target not in seen:
        seen[target] = size
        return False
    if target in _TOP_FILES:
        raise LayoutError(f"{where} holds {target} twice; refused")
    if seen[target] != size:
        raise copies_differ(where, target)
    return True


def copies_differ(where: str, name: str) -> LayoutError:
    """The error for a member held twice with different bytes."""
    return LayoutError(f"{where} holds {name[:200]} twice, with bytes that differ; refused")


def same_bytes(a: IO[bytes], b: IO[bytes], size: int) -> bool:
    """Whether the next `size` bytes of two files are the same (read in bounded chunks)."""
    left = size
    while left:
        chunk = a.read(min(_COPY_BUFFER, left))
        if not chunk or chunk != b.read(len(chunk)):
            return False
        left -= len(chunk)
    return True


def copy_member(source: IO[bytes], out: Path, size: int) -> int:
    """Copy exactly up to `size` bytes into a new file; the bytes written."""
    written = 0
    with os.fdopen(create_new(out), "wb") as f:
        while written < size and (chunk := source.read(min(_COPY_BUFFER, size - written))):
            f.write(chunk)
            written += len(chunk)
    return written


def read_top(path: Path) -> dict[str, bytes]:
    """Pass one: every header checked, and `oci-layout`, `index.json` and the bundle
    record read (each capped, each refused when it is there twice; so is a blob twice at
    another size); no blob is unpacked."""
    top: dict[str, bytes] = {}
    seen: dict[str, int] = {}
    with open_stream(path) as tar:
        for member, target in named_members(tar, f"archive {path}"):
            seen_before(f"archive {path}", target, member.size, seen)
            if target not in _TOP_FILES:
                continue
            if member.size > MAX_TOP_FILE:
                raise LayoutError(
                    f"archive {path}: {target} is {member.size} bytes, "
                    f"over the {MAX_TOP_FILE} byte limit"
                )
            data = tar.extractfile(member)
            top[target] = data.read(member.size) if data is not None else b""
    return top
