"""Hostile docker archives (issue 25): layer bombs decompressed with flat memory, a compressed
archive read as a stream (never inflated whole onto the disk), floods of members refused past
a bound, duplicate members refused, a layer named many times processed once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror.archive.docker_import import imported_image
from mirror.errors import LayoutError
from tests.support.bounded import MEMORY_MIB, assert_refused, bounded_mirror
from tests.support.disk import small_disk
from tests.support.tars import (
    GIB,
    MIB,
    Member,
    docker_config,
    docker_members,
    empty_members,
    gzip_of,
    header,
    member,
    sha256_of,
    symlink,
    write,
    zeros,
    zstd_of,
)

WRONG_DIFF_ID = "sha256:" + "0" * 64


def _nothing_left(tmp: Path) -> None:
    assert list(tmp.iterdir()) == [], list(tmp.iterdir())


# 1. a layer that decompresses to gigabytes is streamed with flat memory


def test_a_zstd_layer_bomb_is_decompressed_with_flat_memory(tmp_path: Path) -> None:
    bomb = zstd_of(zeros(GIB))  # RLE blocks: 1 GiB in ~40 KB
    assert len(bomb) < 100 * 1024
    archive = tmp_path / "bomb.tar"
    write(
        archive,
        [
            *docker_members(docker_config([WRONG_DIFF_ID]), ["l/layer.tar"]),
            (header("l/layer.tar", len(bomb)), [bomb], len(bomb)),
        ],
    )
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    result = bounded_mirror(
        "copy", f"docker-archive:{archive}", f"oci:{out}:v1", timeout=120, env={"TMPDIR": str(tmp)}
    )
    assert_refused(result, "diff_id")
    assert not out.exists()
    _nothing_left(tmp)


def test_gzip_layers_of_zeros_import_with_flat_memory(tmp_path: Path) -> None:
    """Legitimately large layers still import: the bound is on memory, not on size."""
    size = 512 * MIB
    layer = gzip_of(zeros(size))
    diff_id = sha256_of(zeros(size))
    archive = tmp_path / "zeros.tar"
    write(
        archive,
        [
            *docker_members(docker_config([diff_id, diff_id]), ["a/layer.tar", "b/layer.tar"]),
            (header("a/layer.tar", len(layer)), [layer], len(layer)),
            (header("b/layer.tar", len(layer)), [layer], len(layer)),
        ],
    )
    result = bounded_mirror(
        "copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'o'}:v1", timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.peak_mib < MEMORY_MIB, result.peak_mib


async def test_a_layer_over_the_size_limit_is_refused_as_it_streams(tmp_path: Path) -> None:
    layer = gzip_of(zeros(3 * MIB))
    archive = tmp_path / "big.tar"
    write(
        archive,
        [
            *docker_members(docker_config([sha256_of(zeros(3 * MIB))]), ["a/layer.tar"]),
            (header("a/layer.tar", len(layer)), [layer], len(layer)),
        ],
    )
    with pytest.raises(LayoutError, match=r"a/layer\.tar is over 2097152 bytes uncompressed"):
        async with imported_image(archive, None, max_layer_size=2 * MIB):
            pass
    async with imported_image(archive, None, max_layer_size=3 * MIB) as layout:
        assert [image.name for image in await layout.images()] == ["imported"]


@pytest.mark.parametrize("suffix", [".tar", ".tar.zst"])
def test_sigterm_mid_layer_stops_at_once(tmp_path: Path, suffix: str) -> None:
    """A layer that takes half a minute to convert (4 GiB of zeros: as a zstd layer in a plain
    tar, or plain in a `.tar.zst`) does not hold up SIGTERM: the thread converting it stops
    at its next chunk, and the temporary folder is gone."""
    size = 4 * GIB
    if suffix == ".tar":
        layer = zstd_of(zeros(size))
        stored: Member = (header("l/layer.tar", len(layer)), [layer], len(layer))
    else:
        stored = (header("l/layer.tar", size), zeros(size), size)
    archive = tmp_path / f"big{suffix}"
    write(archive, [*docker_members(docker_config([WRONG_DIFF_ID]), ["l/layer.tar"]), stored])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "copy", f"docker-archive:{archive}", f"oci:{tmp}/o:v1"],
        env={**os.environ, "TMPDIR": str(tmp)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 64 * 1024 for p in tmp.glob("*/layer-*.part")):
            assert proc.poll() is None, proc.stderr
            assert time.monotonic() < deadline, "the layer never got under way"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err.splitlines()) == (143, ["mirror: error: terminated"])
    _nothing_left(tmp)


# 2. `docker save | gzip` is read as a stream: never inflated whole onto the disk


def test_a_gzip_archive_is_never_inflated_onto_the_disk(tmp_path: Path) -> None:
    """1 GiB of layer in a 5 MB `.tar.gz`, `manifest.json` last (as docker writes it), a wrong
    diff_id: refused after one stream through, the temporary folder on a 32 MiB disk."""
    manifest, config = docker_members(docker_config([WRONG_DIFF_ID]), ["l/layer.tar"])
    archive = tmp_path / "app.tar.gz"
    write(archive, [(header("l/layer.tar", GIB), zeros(GIB), GIB), config, manifest])
    assert archive.stat().st_size < 8 * MIB
    out = tmp_path / "out"
    with small_disk(tmp_path / "tmp", "32m") as tmp:
        result = bounded_mirror(
            "copy", f"docker-archive:{archive}", f"oci:{out}:v1", env={"TMPDIR": str(tmp)}
        )
        assert_refused(result, "diff_id")
        _nothing_left(tmp)
    assert not out.exists()


# 3. a flood of members is refused past a bound


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_flood_of_members_is_refused(tmp_path: Path, suffix: str) -> None:
    layer = os.urandom(1024)
    manifest, config = docker_members(docker_config([sha256_of([layer])]), ["l/layer.tar"])
    flood = empty_members(f"junk/{n}" for n in range(200_000))
    archive = tmp_path / f"flood{suffix}"
    write(archive, [member("l/layer.tar", layer), config, manifest, *flood])
    for args in (
        ("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'out'}:v1"),
        ("tags", f"docker-archive:{archive}"),
    ):
        assert_refused(bounded_mirror(*args), "100000", "members")
    assert not (tmp_path / "out").exists()


# 4. what is verified is what is used: no member twice, unless with the same bytes


def _image(layer: bytes, tag: str = "hostile/app:1") -> list[Member]:
    manifest, config = docker_members(docker_config([sha256_of([layer])]), ["l/layer.tar"], tag)
    return [member("l/layer.tar", layer), config, manifest]


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_two_manifest_files_are_refused(tmp_path: Path, suffix: str) -> None:
    first, second = _image(os.urandom(1024)), _image(os.urandom(1024), "hostile/app:2")
    archive = tmp_path / f"dup{suffix}"
    write(archive, first + second)
    for args in (
        ("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'out'}:v1"),
        ("tags", f"docker-archive:{archive}"),
    ):
        assert_refused(bounded_mirror(*args), "manifest.json", "twice")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_a_layer_twice_with_other_bytes_is_refused(
    tmp_path: Path, suffix: str, same_size: bool
) -> None:
    layer = os.urandom(1024)
    other = member("l/layer.tar", os.urandom(1024 if same_size else 1000))
    for forged in ([other, *_image(layer)], [*_image(layer), other]):
        archive = tmp_path / f"dup{suffix}"
        write(archive, forged)
        result = bounded_mirror("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'o'}:v1")
        assert_refused(result, "l/layer.tar", "twice", "differ")
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_layer_twice_with_the_same_bytes_is_read(tmp_path: Path, suffix: str) -> None:
    image = _image(os.urandom(1024))
    archive = tmp_path / f"same{suffix}"
    write(archive, [image[0], *image])
    result = bounded_mirror("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'o'}:v1")
    assert result.returncode == 0, result.stderr


# 5. a layer named many times is read, hashed and compressed once


def test_a_layer_named_many_times_is_processed_once(tmp_path: Path) -> None:
    """300 references (half through a link) to one 8 MiB layer: converted 300 times, it would
    take minutes."""
    layer = os.urandom(8 * MIB)
    names = ["l/layer.tar", "alias/layer.tar"] * 150
    archive = tmp_path / "many.tar"
    manifest, config = docker_members(docker_config([sha256_of([layer])] * 300), names)
    write(
        archive,
        [
            member("l/layer.tar", layer),
            symlink("alias/layer.tar", "../l/layer.tar"),
            config,
            manifest,
        ],
    )
    out = tmp_path / "out"
    result = bounded_mirror("copy", f"docker-archive:{archive}", f"oci:{out}:v1", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.peak_mib < MEMORY_MIB, result.peak_mib
    index = json.loads((out / "index.json").read_bytes())
    digest = index["manifests"][0]["digest"].partition(":")[2]
    layers = json.loads((out / "blobs" / "sha256" / digest).read_bytes())["layers"]
    assert len(layers) == 300
    assert len({layer["digest"] for layer in layers}) == 1


def test_more_layers_than_a_manifest_can_hold_are_refused_first(tmp_path: Path) -> None:
    """The 4 MiB config cap lets 55,000 diff_ids through; their manifest would be over the
    4 MiB manifest cap, so the image is refused before any layer is read."""
    layer = os.urandom(MIB)
    count = 50_000
    manifest, config = docker_members(
        docker_config([sha256_of([layer])] * count), ["l/layer.tar"] * count
    )
    archive = tmp_path / "many.tar"
    write(archive, [member("l/layer.tar", layer), config, manifest])
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    result = bounded_mirror(
        "copy", f"docker-archive:{archive}", f"oci:{out}:v1", timeout=30, env={"TMPDIR": str(tmp)}
    )
    assert_refused(result, "50000 layers", "manifest")
    assert not out.exists()
    _nothing_left(tmp)
