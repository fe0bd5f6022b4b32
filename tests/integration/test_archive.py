"""The oci-archive endpoint without a copy on disk: written as one tar stream, a plain tar
read in place; failures leave nothing behind."""

from __future__ import annotations

import asyncio
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

import mirror
from mirror.archive import unpack as mirror_archive
from mirror.archive.docker_export import DockerArchiveWriter
from mirror.archive.writer import ArchiveWriter
from mirror.errors import DigestMismatch, LayoutError
from tests.support.layouts import archive_problems
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, ScriptedProxy, address, serve
from tests.support.tools import FIXTURES, skopeo
from tests.support.tools import mirror as mirror_cli


async def test_a_copy_into_an_archive_is_streamed(registry: Registry, tmp_path: Path) -> None:
    target = "docker://" + registry.push_fixture("multi-arch", "archive/multi")
    out = tmp_path / "out"
    out.mkdir()
    result = await mirror.copy(target, f"oci-archive:{out / 'm.tar'}:app")
    with tarfile.open(out / "m.tar") as tar:
        names = tar.getnames()
    # blobs were appended as they arrived; the layout files close the stream
    assert names[-2:] == ["oci-layout", "index.json"]
    assert all(n.startswith("blobs/sha256/") for n in names[:-2])
    assert sorted(p.name for p in out.iterdir()) == ["m.tar"]  # no temporary layout left
    raw = skopeo("inspect", "--raw", f"oci-archive:{out / 'm.tar'}:app").stdout.encode()
    assert str(mirror.Digest.of(raw)) == result.digest
    assert await archive_problems(out / "m.tar", tmp_path / "check") == []


async def test_wrong_bytes_leave_no_archive(registry: Registry, tmp_path: Path) -> None:
    registry.push_fixture("oci-single", "archive/bad")
    runner = await serve(ScriptedProxy(registry.host, flip_blob_byte=True).app())
    try:
        with pytest.raises(DigestMismatch):
            await mirror.copy(
                f"docker://{address(runner)}/archive/bad:v1", f"oci-archive:{tmp_path / 'b.tar'}"
            )
    finally:
        await runner.cleanup()
    assert list(tmp_path.iterdir()) == []


async def test_a_plain_tar_is_read_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "in.tar"
    skopeo("copy", f"oci:{FIXTURES / 'oci-single'}:v1", f"oci-archive:{archive}:x")

    def never(path: Path, dest: Path) -> None:
        raise AssertionError(f"{path} was unpacked to {dest}")

    monkeypatch.setattr(mirror_archive, "unpack_layout", never)  # a plain tar is never unpacked
    info = await mirror.inspect(f"oci-archive:{archive}:x")
    copied = await mirror.copy(f"oci-archive:{archive}:x", f"oci:{tmp_path / 'l'}:x")
    assert copied.digest == info.digest
    # a flipped byte inside a blob is caught when the blob is read from its place
    with tarfile.open(archive) as tar:
        layer = max(
            (m for m in tar.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size
        )
    data = bytearray(archive.read_bytes())
    data[layer.offset_data + 3] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        await mirror.copy(f"oci-archive:{archive}:x", f"oci:{tmp_path / 'l2'}:x")


@pytest.mark.parametrize(
    ("writer", "slow", "destination"),
    [
        (ArchiveWriter, "_close", "oci-archive:{out}:v1"),
        (DockerArchiveWriter, "_write_tar", "docker-archive:{out}:app:v1"),
    ],
)
async def test_a_copy_cancelled_while_the_archive_is_finished_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    writer: type[ArchiveWriter | DockerArchiveWriter],
    slow: str,
    destination: str,
) -> None:
    """A Ctrl-C or SIGTERM while the archive's last bytes are flushed (seconds for a large
    one) removes what was staged, as one during the copy does."""
    started = threading.Event()
    finishing = getattr(writer, slow)

    def slowly(self: object) -> None:
        started.set()
        time.sleep(0.5)
        finishing(self)

    monkeypatch.setattr(writer, slow, slowly)
    out = tmp_path / "out" / "image.tar"
    copying = asyncio.create_task(
        mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", destination.format(out=out))
    )
    assert await asyncio.to_thread(started.wait, 30)
    copying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await copying
    assert list(out.parent.iterdir()) == []


# an archive that exists: images are added to it, as to a layout (issue 26, item 2)

SINGLE = f"oci:{FIXTURES / 'oci-single'}:v1"
MULTI = f"oci:{FIXTURES / 'multi-arch'}:v1"


def _blob_members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name for m in tar.getmembers() if m.name.startswith("blobs/")}


def _layout_blobs(layout: Path) -> set[str]:
    return {f"blobs/sha256/{p.name}" for p in (layout / "blobs" / "sha256").iterdir()}


@pytest.mark.parametrize("name", ["both.tar", "both.tar.zst"])
async def test_a_second_image_is_added_to_the_archive(tmp_path: Path, name: str) -> None:
    """It replaced the file: the first image was gone with no word."""
    archive = tmp_path / name
    one = await mirror.copy(SINGLE, f"oci-archive:{archive}:one")
    two = await mirror.copy(MULTI, f"oci-archive:{archive}:two")
    for ref, copied in (("one", one), ("two", two)):
        raw = skopeo("inspect", "--raw", f"oci-archive:{archive}:{ref}").stdout.encode()
        assert str(mirror.Digest.of(raw)) == copied.digest
    assert await mirror.list_tags(f"oci-archive:{archive}") == ["one", "two"]
    assert await archive_problems(archive, tmp_path / "check") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, "check"]


async def test_the_same_image_again_is_up_to_date_and_nothing_is_read_or_written(
    counting_proxy: tuple[FaultProxy, str], registry: Registry, tmp_path: Path
) -> None:
    """It downloaded every blob again and rewrote the file, where a registry or a layout
    said "up to date"."""
    proxy, host = counting_proxy
    registry.push_fixture("multi-arch", "archive/again")
    archive = tmp_path / "again.tar"
    source = f"docker://{host}/archive/again:v1"
    first = await mirror.copy(source, f"oci-archive:{archive}:app")
    before, sent = archive.stat(), proxy.bytes_out
    again = await mirror.copy(source, f"oci-archive:{archive}:app")
    assert again.up_to_date
    assert again.digest == first.digest
    assert again.blobs_copied == 0
    assert proxy.bytes_out == sent  # no blob read again
    after = archive.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.tar"]


async def test_a_name_moved_to_another_image_leaves_nothing_of_the_old_one(
    tmp_path: Path,
) -> None:
    """A nightly `copy … oci-archive:backup.tar:latest` whose tag moved keeps what the archive
    names and nothing else: it does not grow night after night."""
    archive = tmp_path / "backup.tar"
    await mirror.copy(SINGLE, f"oci-archive:{archive}:keep")
    await mirror.copy(f"oci:{FIXTURES / 'docker-v2'}:v1", f"oci-archive:{archive}:latest")
    moved = await mirror.copy(MULTI, f"oci-archive:{archive}:latest")
    assert await mirror.list_tags(f"oci-archive:{archive}") == ["keep", "latest"]
    assert (await mirror.inspect(f"oci-archive:{archive}:latest")).digest == moved.digest
    wanted = _layout_blobs(FIXTURES / "oci-single") | _layout_blobs(FIXTURES / "multi-arch")
    assert _blob_members(archive) == wanted
    assert await archive_problems(archive, tmp_path / "check") == []


async def test_a_failed_copy_into_an_archive_leaves_it_as_it_was(
    registry: Registry, tmp_path: Path
) -> None:
    archive = tmp_path / "kept.tar"
    await mirror.copy(SINGLE, f"oci-archive:{archive}:one")
    kept = archive.read_bytes()
    registry.push_fixture("multi-arch", "archive/flipped")
    runner = await serve(ScriptedProxy(registry.host, flip_blob_byte=True).app())
    try:
        with pytest.raises(DigestMismatch):
            await mirror.copy(
                f"docker://{address(runner)}/archive/flipped:v1", f"oci-archive:{archive}:two"
            )
    finally:
        await runner.cleanup()
    assert archive.read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.tar"]


async def test_a_file_that_is_no_archive_or_a_damaged_one_is_not_replaced(
    tmp_path: Path,
) -> None:
    """A file of something else was overwritten without a word; a damaged archive's images
    are not carried into a new one unverified."""
    notes = tmp_path / "notes.tar"
    notes.write_bytes(b"my notes, not an archive\n" * 40)
    with pytest.raises(LayoutError, match=r"notes\.tar"):
        await mirror.copy(SINGLE, f"oci-archive:{notes}:one")
    assert notes.read_bytes() == b"my notes, not an archive\n" * 40
    damaged = tmp_path / "damaged.tar"
    await mirror.copy(SINGLE, f"oci-archive:{damaged}:one")
    with tarfile.open(damaged) as tar:
        layer = max((m for m in tar.getmembers() if m.name.startswith("blobs/")), key=_size)
    data = bytearray(damaged.read_bytes())
    data[layer.offset_data + 3] ^= 0x01
    damaged.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        await mirror.copy(MULTI, f"oci-archive:{damaged}:two")
    assert damaged.read_bytes() == bytes(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.tar", "notes.tar"]


def _size(member: tarfile.TarInfo) -> int:
    return member.size


def test_copy_help_says_what_an_existing_archive_gets() -> None:
    text = " ".join(mirror_cli("copy", "--help").stdout.split())
    assert "an existing oci-archive keeps its images" in text


@pytest.mark.parametrize("name", ["week.tar", "week.tar.zst"])
async def test_a_bundle_is_not_made_a_single_image_archive(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A bundle's record lists its images (and a delta leaves blobs out): a copy into it
    would lose the record, so it is refused and the bundle left as it was; a compressed one
    unpacked to be read leaves nothing in the temporary folder either."""
    image = registry.push_fixture("oci-single", "archive/bundled")
    bundle, scratch = tmp_path / name, tmp_path / "scratch"
    made = mirror_cli("bundle", "create", str(bundle), image)
    assert made.returncode == 0, made.stderr
    kept = bundle.read_bytes()
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(LayoutError, match="is a bundle"):
        await mirror.copy(MULTI, f"oci-archive:{bundle}:two")
    assert bundle.read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "scratch"])
    assert list(scratch.iterdir()) == []
