"""The blob-location memory: bounded, merged across processes, never trusting a damaged file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirror.oci.digest import Digest
from mirror.registry import locations
from mirror.registry.locations import MAX_REPOSITORIES, BlobLocations

HOST = "registry.example.com:5000"


def digest(n: int) -> Digest:
    return Digest(f"sha256:{n:064x}")


async def test_what_one_process_learns_the_next_finds_most_recent_first(tmp_path: Path) -> None:
    first = BlobLocations(tmp_path)
    first.remember(HOST, digest(1), "team/a")
    first.remember(HOST, digest(1), "team/b")
    await first.save()
    second = BlobLocations(tmp_path)
    assert second.candidates(HOST, digest(1), exclude="team/c") == ["team/b", "team/a"]
    assert second.candidates(HOST, digest(1), exclude="team/b") == ["team/a"]
    assert second.candidates("other:5000", digest(1), exclude="x") == []


async def test_two_writers_merge_and_a_forgotten_entry_stays_forgotten(tmp_path: Path) -> None:
    seed = BlobLocations(tmp_path)
    seed.remember(HOST, digest(1), "stale/repo")
    await seed.save()
    one, two = BlobLocations(tmp_path), BlobLocations(tmp_path)
    one.remember(HOST, digest(2), "one/repo")
    two.remember(HOST, digest(3), "two/repo")
    two.forget(HOST, digest(1), "stale/repo")
    await one.save()
    await two.save()
    merged = BlobLocations(tmp_path)
    assert merged.candidates(HOST, digest(2), exclude="") == ["one/repo"]
    assert merged.candidates(HOST, digest(3), exclude="") == ["two/repo"]
    assert merged.candidates(HOST, digest(1), exclude="") == []


async def test_the_memory_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locations, "MAX_DIGESTS", 5)
    memory = BlobLocations(tmp_path)
    for n in range(8):
        memory.remember(HOST, digest(n), "team/a")
    for n in range(MAX_REPOSITORIES + 2):
        memory.remember(HOST, digest(7), f"team/r{n}")
    await memory.save()
    (saved,) = tmp_path.glob("*.json")
    blobs = json.loads(saved.read_text())["blobs"]
    assert set(blobs) == {str(digest(n)) for n in range(3, 8)}  # the oldest forgotten
    assert len(blobs[str(digest(7))]) == MAX_REPOSITORIES


@pytest.mark.parametrize(
    "damage",
    [
        b'{"version": 1, "blobs": {"sha256:' + b"1" * 30,  # cut short
        b"\x00\xff not json",
        b'{"version": 99, "blobs": {}}',
        b'{"version": 1, "blobs": {"../../etc": {"x": 1}, "sha256:'
        + b"2" * 64
        + b'": {"Bad Name": 1, "ok/repo": "later", "good/repo": 5}}}',
    ],
)
async def test_a_damaged_or_hostile_file_counts_for_nothing_bad(
    tmp_path: Path, damage: bytes
) -> None:
    memory = BlobLocations(tmp_path)
    memory.remember(HOST, digest(9), "team/a")
    await memory.save()
    (saved,) = tmp_path.glob("*.json")
    saved.write_bytes(damage)
    reread = BlobLocations(tmp_path)
    found = reread.candidates(HOST, Digest("sha256:" + "2" * 64), exclude="")
    assert found in ([], ["good/repo"])
    reread.remember(HOST, digest(10), "team/b")
    await reread.save()
    assert json.loads(saved.read_text())["version"] == 1
