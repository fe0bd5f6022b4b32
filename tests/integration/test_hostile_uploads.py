"""Hostile answers to uploads (issue 25, items 6-7): an upload that the registry rewinds
ends in one line within a bound of bytes sent; a minimum chunk size of 5,000 digits and a
PATCH answered before its body is read are one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.generate import make_big_image
from tests.support.bounded import abounded_mirror, assert_refused
from tests.support.hostile import HostileRegistry
from tests.support.scripted import serving

MiB = 1024 * 1024
SIZE = 64 * MiB  # the chunked-upload threshold: uploaded in PATCHes


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout holding one image whose one layer is 64 MiB (uploaded in chunks)."""
    root = tmp_path_factory.mktemp("hostile-uploads") / "src"
    make_big_image(root, "big", 1, SIZE, seed=3)
    return root


async def test_a_registry_that_rewinds_every_patch_ends_the_upload(big_layout: Path) -> None:
    registry = HostileRegistry(uploads="rewind")
    async with serving(registry.app()) as host:
        result = await abounded_mirror(
            "--retries", "2", "copy", f"oci:{big_layout}:big", f"docker://{host}/app:v1"
        )
    assert_refused(result, "holds 0 bytes after a chunk")
    assert registry.patches <= 3  # failures in a row: retries + 1
    assert registry.upload_bytes <= 3 * SIZE


async def test_a_registry_that_rewinds_every_other_patch_is_bounded_by_bytes(
    big_layout: Path,
) -> None:
    registry = HostileRegistry(uploads="rewind-every-other")
    async with serving(registry.app()) as host:
        result = await abounded_mirror(
            "--retries", "2", "copy", f"oci:{big_layout}:big", f"docker://{host}/app:v1"
        )
    assert_refused(result, "keeps losing what it is sent")
    assert registry.upload_bytes <= 3 * SIZE + 16 * MiB  # the bound, and the chunk past it


async def test_a_minimum_chunk_of_5000_digits_is_one_line(big_layout: Path) -> None:
    registry = HostileRegistry(uploads="min-length")
    async with serving(registry.app()) as host:
        result = await abounded_mirror("copy", f"oci:{big_layout}:big", f"docker://{host}/app:v1")
    assert_refused(result, "chunks of at least")


async def test_a_patch_answered_before_its_body_is_read_is_one_line(big_layout: Path) -> None:
    registry = HostileRegistry(uploads="early-404")
    async with serving(registry.app()) as host:
        result = await abounded_mirror(
            "--retries", "2", "copy", f"oci:{big_layout}:big", f"docker://{host}/app:v1"
        )
    assert_refused(result, "blob upload unknown")
    assert "RuntimeError" not in result.stderr
