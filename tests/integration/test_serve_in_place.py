"""A 1 GiB bundle served in place: every blob pulled and verified while nothing is written
under TMPDIR and the server's memory stays flat; SIGTERM during a pull lets the pull finish
and ends the server with 0."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path

import aiohttp
import pytest

import mirror
from fixtures.generate import make_big_image
from mirror.archive.bundle import create_bundle
from tests.support.registry import Registry
from tests.support.serving import start_serve

MiB = 1024 * 1024
#: the most the server may hold in memory at its peak (the issue's bound)
MAX_RSS = 150 * MiB


def _peak_rss(pid: int) -> int:
    """The peak resident memory of process `pid` (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def _pull_blob(http: aiohttp.ClientSession, path: str, pause: float = 0.0) -> str:
    """Stream a blob and return its sha256 digest (reading slowly with `pause`)."""
    hasher = hashlib.sha256()
    async with http.get(path) as answer:
        assert answer.status == 200
        async for chunk in answer.content.iter_chunked(MiB):
            hasher.update(chunk)
            if pause:
                await asyncio.sleep(pause)
    return f"sha256:{hasher.hexdigest()}"


@pytest.mark.slow
async def test_a_1_gib_bundle_is_served_without_a_byte_under_tmpdir(
    registry: Registry, tmp_path: Path
) -> None:
    make_big_image(tmp_path / "big", "v1", 4, 256 * MiB, seed=77)
    await mirror.copy(f"oci:{tmp_path / 'big'}:v1", f"docker://{registry.host}/inplace/big:v1")
    bundle = tmp_path / "big.tar"
    await create_bundle(bundle, [f"{registry.host}/inplace/big:v1"])
    assert bundle.stat().st_size > 1024 * MiB
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    served = start_serve(str(bundle), env=env)
    try:
        async with aiohttp.ClientSession(served.url) as http:
            manifest = await (await http.get("/v2/inplace/big/manifests/v1")).json()
            blobs = [manifest["config"], *manifest["layers"]]
            digests = await asyncio.gather(
                *(_pull_blob(http, f"/v2/inplace/big/blobs/{b['digest']}") for b in blobs)
            )
            assert digests == [b["digest"] for b in blobs]
            assert list(tmpdir.iterdir()) == []
            assert _peak_rss(served.process.pid) < MAX_RSS
            last = manifest["layers"][-1]["digest"]
            slow = asyncio.create_task(_pull_blob(http, f"/v2/inplace/big/blobs/{last}", 0.002))
            await asyncio.sleep(0.5)
            served.process.send_signal(signal.SIGTERM)
            assert await slow == last  # the pull in flight finished
    finally:
        code, err = served.stop()
    assert code == 0, err
    assert list(tmpdir.iterdir()) == []
