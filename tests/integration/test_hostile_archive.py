"""Hostile archives: checked before anything is unpacked, and only what the layout names is
unpacked, each member up to its declared size (issue 16, observations 7-8)."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.bounded import MEMORY_MIB, assert_refused, bounded_mirror
from tests.support.tars import (
    GIB,
    MIB,
    Member,
    empty_members,
    header,
    member,
    pax,
    write,
    zeros,
)
from tests.support.tools import FIXTURES

_ZEROS = bytes(MIB)


def _layout_members(fixture: str = "oci-single") -> list[Member]:
    """The members of a fixture layout, as a tar of a layout holds them."""
    root = FIXTURES / fixture
    files = [root / "oci-layout", root / "index.json", *sorted((root / "blobs/sha256").iterdir())]
    out: list[Member] = []
    for path in files:
        data = path.read_bytes()
        out.append((header(str(path.relative_to(root)), len(data)), [data], len(data)))
    return out


# 7. nothing is unpacked before it is checked, and only what the layout names


def test_an_unnamed_2_gib_member_is_never_unpacked(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.zst"
    bomb = ("blobs/sha256/" + "e" * 64, 2 * GIB)
    write(archive, [*_layout_members(), (header(*bomb), zeros(bomb[1]), bomb[1])])
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
    last = members[-1][0]  # a blob the image names, swapped for 2 GiB of zeros
    name = tarfile.TarInfo.frombuf(last, "utf-8", "surrogateescape").name
    members[-1] = (header(name, 2 * GIB), zeros(2 * GIB), 2 * GIB)
    archive = tmp_path / "lying.tar.zst"
    write(archive, members)
    result = bounded_mirror(
        "copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1", file_size=64 * MIB
    )
    assert_refused(result, "2147483648 bytes", "declared")


def _sparse_header(name: str, real_size: int) -> bytes:
    """An old-GNU sparse member header: 512 stored bytes standing for `real_size` bytes."""
    block = bytearray(header(name, tarfile.BLOCKSIZE, tarfile.GNUTYPE_SPARSE))
    block[257:265] = b"ustar  \0"  # the GNU magic
    block[386:398] = b"%011o\0" % (real_size - tarfile.BLOCKSIZE)  # first sparse offset
    block[398:410] = b"%011o\0" % tarfile.BLOCKSIZE  # its length
    block[483:495] = b"%011o\0" % real_size  # realsize
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def test_a_sparse_member_is_refused_by_bundle_verify(tmp_path: Path) -> None:
    name = "blobs/sha256/" + "d" * 64
    members = [*_layout_members(), (_sparse_header(name, 4 * GIB), [_ZEROS[:512]], 512)]
    archive = tmp_path / "sparse.tar"
    write(archive, members)
    assert archive.stat().st_size < 64 * 1024
    result = bounded_mirror("bundle", "verify", str(archive), file_size=64 * MIB)
    assert_refused(result, "sparse")


# 8. header extensions and top files are capped before they are read


def test_a_1_gib_pax_header_is_refused_unread(tmp_path: Path) -> None:
    pax = header("././@PaxHeader", GIB, tarfile.XHDTYPE)
    archive = tmp_path / "pax.tar.zst"
    write(archive, [(pax, zeros(GIB), GIB), *_layout_members()])
    for args in (
        ("bundle", "ls", str(archive)),
        ("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1"),
    ):
        assert_refused(bounded_mirror(*args), "header extension", "limit")


def test_a_chain_of_header_extensions_is_refused(tmp_path: Path) -> None:
    """tarfile reads a chain of extension headers by recursion (5,000 was a traceback)."""
    archive = tmp_path / "chain.tar"
    write(archive, [*(pax("comment", b"x") for _ in range(5000)), *_layout_members()])
    result = bounded_mirror("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1")
    assert_refused(result, "header extensions in a row")


def test_global_header_extensions_are_capped_in_all(tmp_path: Path) -> None:
    """tarfile keeps every global pax record for the rest of the archive: 300 of 1 MB, one
    before each of 300 members, take 300 MB."""
    members = _layout_members()
    for number in range(300):
        members += [
            pax(f"k{number}", bytes(1000 * 1000), tarfile.XGLTYPE),
            member(f"{number}", b""),
        ]
    archive = tmp_path / "global.tar.zst"
    write(archive, members)
    result = bounded_mirror("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1")
    assert_refused(result, "global header extensions", "limit")


def test_a_100_mib_index_in_an_archive_is_refused(tmp_path: Path) -> None:
    index = b'{"schemaVersion":2,"manifests":[' + b"{}," * (35 * MIB) + b"{}]}"
    members = [m for m in _layout_members() if not m[0].startswith(b"index.json")]
    members.append((header("index.json", len(index)), [index], len(index)))
    for suffix in (".tar.zst", ".tar"):
        archive = tmp_path / f"index{suffix}"
        write(archive, members)
        result = bounded_mirror("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'o'}:v1")
        assert_refused(result, "index.json", "limit")


# issue 25, item 3: floods of members are refused past a bound, with flat memory

FLOOD = 200_000


def _junk(count: int) -> Iterator[str]:
    return (f"junk/{n}" for n in range(count))


def _blob_names(count: int) -> Iterator[str]:
    return (f"blobs/sha256/{n:064x}" for n in range(count))


@pytest.mark.parametrize("suffix", [".tar", ".tar.zst"])
@pytest.mark.parametrize("names", [_junk, _blob_names], ids=["skipped", "named"])
def test_a_flood_of_members_is_refused(
    tmp_path: Path, suffix: str, names: Callable[[int], Iterator[str]]
) -> None:
    archive = tmp_path / f"flood{suffix}"
    write(archive, [*_layout_members(), *empty_members(names(FLOOD))])
    for args in (
        ("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1"),
        ("bundle", "verify", str(archive)),
    ):
        assert_refused(bounded_mirror(*args), "100000", "members")
    assert not (tmp_path / "out").exists()


def test_a_million_empty_members_cost_neither_memory_nor_minutes(tmp_path: Path) -> None:
    """3 million members cost `bundle verify` 1.56 GB and 4 minutes; a million, 600 MB."""
    archive = tmp_path / "million.tar.zst"
    write(archive, [*_layout_members(), *empty_members(_junk(1_000_000))])
    assert archive.stat().st_size < 16 * MIB
    assert_refused(bounded_mirror("bundle", "verify", str(archive), timeout=30), "members")


# issue 25, item 4: what is verified is what is used: no member twice, unless the same bytes


def _by_name(members: list[Member]) -> dict[str, Member]:
    return {tarfile.TarInfo.frombuf(m[0], "utf-8", "strict").name: m for m in members}


def _refused_everywhere(tmp_path: Path, members: list[Member], *words: str) -> None:
    """`copy`, `inspect` and `bundle verify` refuse the archive, as `.tar` and `.tar.zst`."""
    for suffix in (".tar", ".tar.zst"):
        archive = tmp_path / f"dup{suffix}"
        write(archive, members)
        for args in (
            ("copy", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'out'}:v1"),
            ("inspect", f"oci-archive:{archive}:v1"),
            ("bundle", "verify", str(archive)),
        ):
            assert_refused(bounded_mirror(*args), *words)
        assert not (tmp_path / "out").exists()


def test_two_index_files_are_refused(tmp_path: Path) -> None:
    """Image A's index.json first, image B's last: verify read A, copy and inspect B."""
    first, second = _by_name(_layout_members()), _by_name(_layout_members("docker-v2"))
    members = [*first.values(), *(m for n, m in second.items() if n != "oci-layout")]
    _refused_everywhere(tmp_path, members, "index.json", "twice")


@pytest.mark.parametrize("name", ["oci-layout", "mirror-bundle.json"])
def test_a_top_file_twice_is_refused(tmp_path: Path, name: str) -> None:
    members = _layout_members()
    data = b'{"imageLayoutVersion":"1.0.0"}' if name == "oci-layout" else b"{}"
    members += [member(name, data), member(name, data)]
    _refused_everywhere(tmp_path, members, name, "twice")


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_a_blob_twice_with_other_bytes_is_refused(tmp_path: Path, same_size: bool) -> None:
    members = _layout_members()
    name, chunks = next((n, m[1]) for n, m in _by_name(members).items() if n.startswith("blobs/"))
    data = b"".join(chunks)
    other = member(name, bytes(b ^ 1 for b in data) if same_size else data + b"\n")
    for forged in ([other, *members], [*members, other]):
        _refused_everywhere(tmp_path, forged, name, "twice", "differ")


def test_a_blob_twice_with_the_same_bytes_is_read(tmp_path: Path) -> None:
    members = _layout_members()
    members += [m for n, m in _by_name(members).items() if n.startswith("blobs/")]
    for suffix in (".tar", ".tar.zst"):
        archive = tmp_path / f"same{suffix}"
        write(archive, members)
        out = tmp_path / f"out{suffix}"
        result = bounded_mirror("copy", f"oci-archive:{archive}:v1", f"oci:{out}:v1")
        assert result.returncode == 0, result.stderr
        result = bounded_mirror("bundle", "verify", str(archive))  # unpacked, then looked at
        assert "not a mirror bundle" in result.stderr, result.stderr
