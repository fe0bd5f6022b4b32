"""SIGTERM ends every command as Ctrl-C does (issue 24, observation 5): a copy stopped in the
middle of a blob exits 143 with one line, an archive's staged files are removed, and a layout
shows nothing half-written (its partial blobs stay for the next run)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import mirror
from fixtures.generate import make_big_image
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve
from tests.support.tools import FIXTURES, REPO
from tests.support.tools import mirror as mirror_cli

MiB = 1024 * 1024
#: one layer large enough that a copy over loopback is still moving when the signal comes
SIZE = 128 * MiB
#: staged bytes that show a blob is being written
UNDER_WAY = 8 * MiB


@pytest.fixture(scope="module")
def big_image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`HOST/signals/big:v1`: one random 128 MiB layer in the real registry."""
    root = tmp_path_factory.mktemp("big") / "layout"
    make_big_image(root, "big", 1, SIZE, seed=24)
    target = f"{registry.host}/signals/big:v1"
    asyncio.run(mirror.copy(f"oci:{root}:big", f"docker://{target}"))
    return target


def _stop_when(
    args: list[str], under_way: Callable[[], bool], signals: list[signal.Signals]
) -> tuple[int, list[str]]:
    """Run `mirror ARGS`, send `signals` (a few ms apart) once `under_way()`: its exit code
    and stderr lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not under_way():
            assert proc.poll() is None, f"it ended before it could be stopped: {proc.stderr}"
            assert time.monotonic() < deadline, "the copy never got under way"
            time.sleep(0.002)
        for signum in signals:
            proc.send_signal(signum)
            time.sleep(0.005)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.splitlines()


def _staged_bytes(directory: Path, name: str) -> int:
    """Bytes in the staged files of the archive `name` being written in `directory`."""
    total = 0
    for staged in directory.glob(f".{name}*"):
        files = staged.rglob("*") if staged.is_dir() else [staged]
        for file in files:
            try:
                total += file.stat().st_size
            except FileNotFoundError:
                continue
    return total


STOPS = {
    "sigterm": ([signal.SIGTERM], 143, ["mirror: error: terminated"]),
    "sigterm-twice": ([signal.SIGTERM, signal.SIGTERM], 143, ["mirror: error: terminated"]),
    # Ctrl-C, piped: one line too (click's empty line closes a terminal's ^C echo only)
    "sigint": ([signal.SIGINT], 130, ["mirror: error: interrupted"]),
}


@pytest.mark.parametrize("stop", sorted(STOPS))
@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_a_signal_mid_copy_to_an_archive_leaves_nothing_beside_it(
    big_image: str, tmp_path: Path, transport: str, stop: str
) -> None:
    signals, code, lines = STOPS[stop]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "kept.txt").write_text("there before\n")
    out = out_dir / "OUT.tar"

    args = ["copy", f"docker://{big_image}", f"{transport}:{out}"]
    got = _stop_when(args, lambda: _staged_bytes(out_dir, out.name) >= UNDER_WAY, signals)

    left = sorted(p.name for p in out_dir.iterdir())
    assert (got, left) == ((code, lines), ["kept.txt"])


def _blobs(root: Path) -> dict[str, str]:
    """Each blob file of a layout (`sha256/HEX`) and the sha256 of what it holds."""
    found = {}
    for blob in (root / "blobs" / "sha256").iterdir():
        hasher = hashlib.sha256()
        with open(blob, "rb") as f:
            while chunk := f.read(MiB):
                hasher.update(chunk)
        found[f"sha256/{blob.name}"] = hasher.hexdigest()
    return found


def test_sigterm_mid_copy_into_a_layout_changes_nothing_visible(
    big_image: str, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    done = mirror_cli("copy", f"oci:{FIXTURES / 'oci-single'}:v1", f"oci:{out}:small")
    assert done.returncode == 0, done.stderr
    index = (out / "index.json").read_bytes()
    before = _blobs(out)
    partial = out / ".mirror" / "partial"

    def under_way() -> bool:
        """A partial blob of the big layer holds UNDER_WAY bytes (written, not just sized)."""
        files = partial.glob("sha256-*") if partial.exists() else []
        return any(p.is_file() and p.stat().st_blocks * 512 >= UNDER_WAY for p in files)

    args = ["copy", f"docker://{big_image}", f"oci:{out}:big"]
    got = _stop_when(args, under_way, [signal.SIGTERM])

    after = (got, (out / "index.json").read_bytes())
    assert after == ((143, ["mirror: error: terminated"]), index)
    assert sorted(p.name for p in out.iterdir()) == [".mirror", "blobs", "index.json", "oci-layout"]
    blobs = _blobs(out)
    assert before.items() <= blobs.items()
    # every blob there is whole (small ones may have been written before the signal) ...
    assert all(name == f"sha256/{digest}" for name, digest in blobs.items())
    # ... and the big layer stays a partial blob, kept for the next run
    kept = {p.name.removeprefix("sha256-").partition(".")[0] for p in partial.glob("sha256-*")}
    assert len(kept) == 1
    assert not {f"sha256/{digest}" for digest in kept} & blobs.keys()
    verified = mirror_cli("layout", "verify", str(out))
    assert verified.returncode == 0, verified.stderr


async def test_a_second_sigterm_stops_the_sync_service_at_once_in_one_line(
    registry: Registry, tmp_path: Path
) -> None:
    """The first SIGTERM lets the images in flight finish (exit 0, as before); a second one
    cancels them: exit 143, no traceback."""
    await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{registry.host}/sig/src:a")
    slow = FaultProxy(registry.host, rate=0.0, blob_get_delay=5)  # a far-away source
    runner = await serve(slow.app())
    try:
        config = tmp_path / "sync.toml"
        config.write_text(
            "[defaults]\nblob_cache = false\n"  # no mount: the blob is asked of the source
            f'[[jobs]]\nname = "app"\nsource = "{address(runner)}/sig/src"\n'
            f'destination = "{registry.host}/sig/dst"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirror", "--plain-http", "sync", str(config), "--every", "1s",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        )  # fmt: skip
        assert proc.stderr is not None
        try:
            await asyncio.wait_for(slow.blob_asked.wait(), 60)  # a copy is in flight
            proc.send_signal(signal.SIGTERM)
            stopping = await asyncio.wait_for(proc.stderr.readline(), 30)
            proc.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        await runner.cleanup()
    lines = [stopping.decode().rstrip("\n"), *rest.decode().splitlines()]
    assert (proc.returncode, lines) == (
        143,
        ["mirror: stopping: finishing the images in flight", "mirror: error: terminated"],
    )
