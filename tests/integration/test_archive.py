"""The oci-archive endpoint without a copy on disk: written as one tar stream, a plain tar
read in place; failures leave nothing behind."""

from __future__ import annotations

import asyncio
import tarfile
import threading
import time
from pathlib import Path

import pytest

import mirror
from mirror.archive import unpack as mirror_archive
from mirror.archive.docker_export import DockerArchiveWriter
from mirror.archive.writer import ArchiveWriter
from mirror.errors import DigestMismatch
from tests.support.layouts import archive_problems
from tests.support.registry import Registry
from tests.support.scripted import ScriptedProxy, address, serve
from tests.support.tools import FIXTURES, skopeo


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
