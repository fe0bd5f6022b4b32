"""Hostile layouts: nothing outside the layout is read, written or deleted, and every read is
bounded (issue 16, observations 1-6). Each ends in one clear line and exit 1."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from fixtures.generate import make_big_image
from mirror.layout import Layout
from tests.support.bounded import (
    MEMORY_MIB,
    abounded_mirror,
    assert_refused,
    bounded_mirror,
)
from tests.support.layouts import copy_image
from tests.support.scripted import FaultProxy
from tests.support.tools import FIXTURES, mirror

BIG = 2 * 1024 * 1024  # over the small-blob size, so it goes through a partial file


def _victims(folder: Path) -> dict[str, bytes]:
    folder.mkdir()
    files = {f"keep-{i}": f"precious {i}\n".encode() for i in range(3)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _intact(folder: Path, files: dict[str, bytes]) -> bool:
    return {p.name: p.read_bytes() for p in folder.iterdir()} == files


def _layer(layout: Path) -> Path:
    """The largest blob file of a layout."""
    return max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)


# 1. gc never deletes outside the layout


def test_gc_refuses_a_linked_tmp_directory(fixture_copy: object, tmp_path: Path) -> None:
    layout = fixture_copy("oci-single")  # type: ignore[operator]
    outside = tmp_path / "outside"
    files = _victims(outside)
    (layout / ".mirror").mkdir(exist_ok=True)
    (layout / ".mirror" / "tmp").symlink_to(outside)
    assert_refused(bounded_mirror("layout", "gc", str(layout)), "tmp", "symbolic link")
    assert _intact(outside, files)


def test_gc_refuses_blobs_linked_to_another_layout(fixture_copy: object, tmp_path: Path) -> None:
    layout = fixture_copy("oci-single")  # type: ignore[operator]
    other = fixture_copy("multi-arch")  # type: ignore[operator]
    before = sorted(p.name for p in (other / "blobs" / "sha256").iterdir())
    os.rename(layout / "blobs" / "sha256", tmp_path / "set-aside")
    (layout / "blobs" / "sha256").symlink_to(other / "blobs" / "sha256")
    assert_refused(bounded_mirror("layout", "gc", str(layout)), "sha256", "symbolic link")
    assert sorted(p.name for p in (other / "blobs" / "sha256").iterdir()) == before


def test_gc_deletes_no_planted_link_and_nothing_it_points_at(
    fixture_copy: object, tmp_path: Path
) -> None:
    layout = fixture_copy("oci-single")  # type: ignore[operator]
    outside = tmp_path / "outside"
    files = _victims(outside)
    (layout / ".mirror" / "partial").mkdir(parents=True, exist_ok=True)
    (layout / ".mirror" / "tmp").mkdir(exist_ok=True)
    (layout / ".mirror" / "partial" / "sha256-x").symlink_to(outside / "keep-0")
    unlisted = "0" * 64
    (layout / "blobs" / "sha256" / unlisted).symlink_to(outside / "keep-1")
    result = mirror("layout", "gc", str(layout))
    assert result.returncode == 0, result.stderr
    assert _intact(outside, files)
    assert (layout / ".mirror" / "partial" / "sha256-x").is_symlink()
    verify = mirror("layout", "verify", str(layout))
    assert verify.returncode == 1
    assert f"blobs/sha256/{unlisted} is not a regular file" in verify.stdout + verify.stderr


# 2. a planted partial file never redirects a write


def test_a_planted_partial_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    source = tmp_path / "source"
    make_big_image(source, "big", layers=1, layer_size=BIG)
    layer = _layer(source)
    dest = tmp_path / "dest"
    assert mirror("copy", f"oci:{FIXTURES / 'oci-single'}", f"oci:{dest}:other").returncode == 0
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (dest / ".mirror" / "partial" / f"sha256-{layer.name}").symlink_to(victim)
    result = bounded_mirror("copy", f"oci:{source}:big", f"oci:{dest}:big")
    assert_refused(result, "symbolic link")
    assert victim.read_bytes() == b"precious\n"
    assert not (dest / "blobs" / "sha256" / layer.name).exists()


# 3. a linked blob is never read, so never sent


async def test_push_never_sends_a_blob_that_is_a_link(
    tmp_path: Path, counting_proxy: tuple[FaultProxy, str]
) -> None:
    proxy, host = counting_proxy
    source = tmp_path / "source"
    make_big_image(source, "big", layers=1, layer_size=BIG)
    layer = _layer(source)
    private = tmp_path / "private-key"
    private.write_bytes(b"S" * BIG)  # the right size, the wrong bytes
    layer.unlink()
    layer.symlink_to(private)
    result = await abounded_mirror("push", f"{source}:big", f"{host}/hostile/link:v1")
    assert_refused(result, layer.name, "symbolic link")
    assert proxy.bytes_in < BIG  # the config at most, never the linked file


# 4. reads are bounded: no link to /dev/zero or a FIFO is followed


def test_an_index_linked_to_dev_zero_is_refused(fixture_copy: object) -> None:
    layout = fixture_copy("oci-single")  # type: ignore[operator]
    (layout / "index.json").unlink()
    (layout / "index.json").symlink_to("/dev/zero")
    assert_refused(bounded_mirror("layout", "ls", str(layout)), "index.json")


def test_an_oci_layout_marker_linked_to_dev_zero_is_refused(fixture_copy: object) -> None:
    layout = fixture_copy("oci-single")  # type: ignore[operator]
    (layout / "oci-layout").unlink()
    (layout / "oci-layout").symlink_to("/dev/zero")
    assert_refused(bounded_mirror("layout", "ls", str(layout)), "oci-layout")


def test_an_index_over_the_cap_is_refused_unread(fixture_copy: object) -> None:
    layout = fixture_copy("oci-single")  # type: ignore[operator]
    with open(layout / "index.json", "wb") as f:
        f.write(b'{"schemaVersion":2,"manifests":[' + b"{}," * (35 * 1024 * 1024) + b"{}]}")
    for command in ("ls", "verify"):
        assert_refused(bounded_mirror("layout", command, str(layout)), "index.json", "limit")


def test_verify_ends_on_blobs_that_are_dev_zero_or_a_fifo(fixture_copy: object) -> None:
    layout = fixture_copy("multi-arch")  # type: ignore[operator]
    blobs = sorted((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    zero, fifo = blobs[0], blobs[1]
    zero.unlink()
    zero.symlink_to("/dev/zero")
    fifo.unlink()
    os.mkfifo(fifo)
    result = bounded_mirror("layout", "verify", str(layout), timeout=30)
    assert not result.timed_out
    assert result.returncode == 1
    assert result.peak_mib < MEMORY_MIB
    assert f"blobs/sha256/{zero.name} is not a regular file" in result.stderr
    assert f"blobs/sha256/{fifo.name} is not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


# 5. lock files are never created through a link


def test_a_linked_lock_file_creates_nothing_outside(tmp_path: Path) -> None:
    for lock in ("index.lock", "writers.lock"):
        dest = tmp_path / lock / "layout"
        assert mirror("copy", f"oci:{FIXTURES / 'oci-single'}", f"oci:{dest}:a").returncode == 0
        target = tmp_path / lock / "created-outside"
        (dest / ".mirror" / lock).unlink(missing_ok=True)
        (dest / ".mirror" / lock).symlink_to(target)
        result = bounded_mirror("copy", f"oci:{FIXTURES / 'docker-v2'}", f"oci:{dest}:b")
        assert_refused(result, lock, "symbolic link")
        assert not target.exists()


# 6. gc waits for a writer from its first existence check to its last index write


async def test_gc_waits_for_a_writer_that_found_blobs_present(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    manifest = await copy_image(FIXTURES / "oci-single", "v1", layout, "a")
    async with await Layout.open(layout, create=True) as writer:
        await writer.remove_image("a")  # its blobs are now unreferenced: gc would take them
    async with await Layout.open(layout, create=True) as writer:
        assert await writer.blob_exists(manifest.descriptor())  # a copy finds them present
        gc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirror", "layout", "gc", str(layout)
        )
        await asyncio.sleep(2)
        assert gc.returncode is None  # still waiting for this writer
        assert await writer.blob_exists(manifest.descriptor())
        await writer.add_image(manifest.descriptor(), "a")
    assert await asyncio.wait_for(gc.wait(), 30) == 0
    async with await Layout.open(layout) as reader:
        assert await reader.manifest_get("a") == manifest
