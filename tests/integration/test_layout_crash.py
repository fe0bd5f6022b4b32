"""Layouts stay consistent when writers are killed, and lose nothing when two write at once."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.generate import random_digest
from tests.support.tools import REPO, mirror

BIG = 256 * 1024 * 1024
SEED = 7


def _writer(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.writer", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _assert_consistent(root: Path) -> None:
    result = mirror("layout", "verify", str(root))
    assert result.returncode == 0, result.stderr
    index = json.loads((root / "index.json").read_bytes())
    assert index["schemaVersion"] == 2
    for alg_dir in (root / "blobs").iterdir():
        for blob in alg_dir.iterdir():
            hasher = hashlib.new(alg_dir.name)
            with open(blob, "rb") as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
            assert hasher.hexdigest() == blob.name, f"{blob} has the wrong content"


def _kill_when_written(proc: subprocess.Popen[bytes], partial: Path, size: int) -> bool:
    """SIGKILL the writer once its partial file holds `size` bytes; False if it finished."""
    while proc.poll() is None:
        try:
            reached = partial.stat().st_size >= size
        except FileNotFoundError:
            reached = False
        if reached:
            proc.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.002)
    return False


@pytest.mark.slow
def test_sigkill_while_writing_a_256_mib_blob_leaves_a_consistent_layout(tmp_path: Path) -> None:
    root = tmp_path / "layout"
    digest = random_digest(SEED, BIG)
    args = ("big", str(root), str(SEED), str(BIG), digest)

    first = _writer(*args)
    assert first.wait(120) == 0, first.stderr.read() if first.stderr else ""
    _assert_consistent(root)
    # kill writers at random points of the write (by bytes written), each on a fresh layout
    rng = random.Random(2024)
    partial = root / ".mirror" / "partial" / f"sha256-{digest.removeprefix('sha256:')}"
    killed = 0
    for _ in range(10):
        subprocess.run(["rm", "-rf", str(root)], check=True)
        proc = _writer(*args)
        killed += _kill_when_written(proc, partial, int(BIG * rng.uniform(0.0, 0.95)))
        proc.wait(60)
        if (root / "oci-layout").exists():
            _assert_consistent(root)
    assert killed >= 9, f"only {killed} of 10 writers were killed mid-way"
    # the last killed writer left a partial: the next run re-hashes it and asks for the rest
    partials = list((root / ".mirror" / "partial").glob("sha256-*"))
    kept = max((p.stat().st_size for p in partials), default=0)
    last = subprocess.run(
        [sys.executable, "-m", "tests.support.writer", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    asked = [int(line.split()[1]) for line in last.stdout.splitlines() if line.startswith("asked")]
    if kept < BIG:
        assert asked[:1] == [kept], (asked, kept)
    _assert_consistent(root)
    listed = json.loads(mirror("--json", "layout", "ls", str(root)).stdout)
    assert [r["name"] for r in listed] == ["big"]


@pytest.mark.slow
def test_two_processes_adding_50_tags_each_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "one-layout"
    procs = [_writer("tags", str(root), name, "50") for name in ("left", "right")]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
    names = {r["name"] for r in json.loads(mirror("--json", "layout", "ls", str(root)).stdout)}
    expected = {f"{side}-{i}" for side in ("left", "right") for i in range(50)}
    assert names == expected
    _assert_consistent(root)
