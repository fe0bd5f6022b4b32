"""Hostile archives: checked before anything is unpacked, and only what the layout names is
unpacked, each member up to its declared size (issue 16, observations 7-8)."""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import zstandard

from tests.support.bounded import MEMORY_MIB, assert_refused, bounded_mirror
from tests.support.tools import FIXTURES

GIB = 1024**3
MIB = 1024**2
_ZEROS = bytes(MIB)


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, kind
    return info.tobuf(tarfile.USTAR_FORMAT)


def _zeros(size: int) -> Iterator[bytes]:
    while size > 0:
        yield _ZEROS[: min(MIB, size)]
        size -= MIB


Member = tuple[bytes, Iterable[bytes], int]


def _layout_members() -> list[Member]:
    """The members of the oci-single fixture, as a tar of a layout holds them."""
    root = FIXTURES / "oci-single"
    files = [root / "oci-layout", root / "index.json", *sorted((root / "blobs/sha256").iterdir())]
    out: list[Member] = []
    for path in files:
        data = path.read_bytes()
        out.append((_header(str(path.relative_to(root)), len(data)), [data], len(data)))
    return out


def _write(path: Path, members: Iterable[tuple[bytes, Iterable[bytes], int]]) -> None:
    """A tar of `members` (header, data chunks, size), zstd-compressed for `.zst` names."""
    with open(path, "wb") as raw:
        sink: IO[bytes] = raw
        writer = None
        if path.suffix == ".zst":
            writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
            sink = writer
        for header, chunks, size in members:
            sink.write(header)
            for chunk in chunks:
                sink.write(chunk)
            sink.write(bytes(-size % tarfile.BLOCKSIZE))
        sink.write(bytes(2 * tarfile.BLOCKSIZE))
        if writer is not None:
            writer.flush(zstandard.FLUSH_FRAME)
            writer.close()  # type: ignore[no-untyped-call]


# 7. nothing is unpacked before it is checked, and only what the layout names


def test_an_unnamed_2_gib_member_is_never_unpacked(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.zst"
    bomb = ("blobs/sha256/" + "e" * 64, 2 * GIB)
    _write(archive, [*_layout_members(), (_header(*bomb), _zeros(bomb[1]), bomb[1])])
    assert archive.stat().st_size < 1 * MIB
    out = tmp_path / "out"
    # no file of the run may grow past 64 MiB: a 2 GiB unpack would be killed by SIGXFSZ
    result = bounded_mirror(
        "copy", f"oci-archive:{archive}:v1", f"oci:{out}:v1", file_size=64 * MIB, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.peak_mib < MEMORY_MIB


def test_a_named_member_larger_than_declared_is_refused(tmp_path: Path) -> None:
    members = _layout_members()
    header = members[-1][0]  # a blob the image names, swapped for 2 GiB of zeros
    name = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape").name
    members[-1] = (_header(name, 2 * GIB), _zeros(2 * GIB), 2 * GIB)
    archive = tmp_path / "lying.tar.zst"
    _write(archive, members)
    result = bounded_mirror(
        "copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1", file_size=64 * MIB
    )
    assert_refused(result, "2147483648 bytes", "declared")


def _sparse_header(name: str, real_size: int) -> bytes:
    """An old-GNU sparse member header: 512 stored bytes standing for `real_size` bytes."""
    header = bytearray(_header(name, tarfile.BLOCKSIZE, tarfile.GNUTYPE_SPARSE))
    header[257:265] = b"ustar  \0"  # the GNU magic
    header[386:398] = b"%011o\0" % (real_size - tarfile.BLOCKSIZE)  # first sparse offset
    header[398:410] = b"%011o\0" % tarfile.BLOCKSIZE  # its length
    header[483:495] = b"%011o\0" % real_size  # realsize
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def test_a_sparse_member_is_refused_by_bundle_verify(tmp_path: Path) -> None:
    name = "blobs/sha256/" + "d" * 64
    members = [*_layout_members(), (_sparse_header(name, 4 * GIB), [_ZEROS[:512]], 512)]
    archive = tmp_path / "sparse.tar"
    _write(archive, members)
    assert archive.stat().st_size < 64 * 1024
    result = bounded_mirror("bundle", "verify", str(archive), file_size=64 * MIB)
    assert_refused(result, "sparse")


# 8. header extensions and top files are capped before they are read


def test_a_1_gib_pax_header_is_refused_unread(tmp_path: Path) -> None:
    pax = _header("././@PaxHeader", GIB, tarfile.XHDTYPE)
    archive = tmp_path / "pax.tar.zst"
    _write(archive, [(pax, _zeros(GIB), GIB), *_layout_members()])
    for args in (
        ("bundle", "ls", str(archive)),
        ("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1"),
    ):
        assert_refused(bounded_mirror(*args), "header extension", "limit")


def test_a_100_mib_index_in_an_archive_is_refused(tmp_path: Path) -> None:
    index = b'{"schemaVersion":2,"manifests":[' + b"{}," * (35 * MIB) + b"{}]}"
    members = [m for m in _layout_members() if not m[0].startswith(b"index.json")]
    members.append((_header("index.json", len(index)), [index], len(index)))
    for suffix in (".tar.zst", ".tar"):
        archive = tmp_path / f"index{suffix}"
        _write(archive, members)
        result = bounded_mirror("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'o'}:v1")
        assert_refused(result, "index.json", "limit")
