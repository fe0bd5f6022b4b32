"""A pull or push killed with SIGKILL in the middle of a 256 MiB blob resumes where it stopped:
the second run moves at most 10% more than what was left."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import mirror
from fixtures.generate import make_big_image
from mirror.layout import Layout, verify
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy
from tests.support.tools import REPO

MiB = 1024 * 1024
SIZE = 256 * MiB


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout with one image of one random 256 MiB layer."""
    root = tmp_path_factory.mktemp("big") / "layout"
    make_big_image(root, "big", 1, SIZE, seed=42)
    return root


async def _start(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _run_and_kill_when(
    args: list[str], env: dict[str, str], ready: Callable[[], bool]
) -> None:
    proc = await _start(args, env)
    for _ in range(6000):
        if ready() or proc.returncode is not None:
            break
        await asyncio.sleep(0.005)
    assert proc.returncode is None, "the transfer finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def _run(args: list[str], env: dict[str, str]) -> None:
    proc = await _start(args, env)
    _, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, err.decode()


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.mark.slow
async def test_killed_pull_resumes(
    registry: Registry, big_layout: Path, counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    await mirror.copy(f"oci:{big_layout}:big", f"docker://{registry.host}/resume/pull:v1")
    proxy, host = counting_proxy
    out = tmp_path / "pulled"
    partial_dir = out / ".mirror" / "partial"

    def kept() -> int:
        """Bytes the interrupted pull has recorded as done (a 256 MiB blob goes in ranges)."""
        total = 0
        for sidecar in partial_dir.glob("*.ranges") if partial_dir.exists() else []:
            try:
                record = json.loads(sidecar.read_text())
            except ValueError:
                continue
            total = max(total, len(record["done"]) * record["part"])
        return total

    args = ["pull", f"{host}/resume/pull:v1", str(out)]
    await _run_and_kill_when(args, _env(tmp_path), lambda: kept() >= SIZE // 3)
    done = kept()
    assert 0 < done < SIZE
    proxy.bytes_out = 0
    await _run(args, _env(tmp_path))
    left = SIZE - done
    assert proxy.bytes_out <= left * 1.10 + MiB, (proxy.bytes_out, left)
    async with await Layout.open(out) as layout:
        assert await verify(layout) == []


@pytest.mark.slow
async def test_killed_chunked_push_resumes(
    registry: Registry, big_layout: Path, counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    proxy, host = counting_proxy
    env = _env(tmp_path)
    args = ["push", f"{big_layout}:big", f"{host}/resume/push:v1"]
    # cut the client while it sends a chunk past the first third; the front end (the proxy)
    # buffers request bodies, so the registry never sees that partial chunk
    proxy.hold_patch_at = SIZE // 3
    await _run_and_kill_when(args, env, proxy.held.is_set)
    sessions = list((tmp_path / "state" / "mirror" / "uploads").glob("*.json"))
    assert len(sessions) == 1
    assert oct(sessions[0].stat().st_mode & 0o777) == "0o600"
    kept = json.loads(sessions[0].read_text())["offset"]
    assert 0 < kept < SIZE
    proxy.bytes_in = 0
    await _run(args, env)
    left = SIZE - kept
    assert proxy.bytes_in <= left * 1.10 + MiB, (proxy.bytes_in, left)
    assert not list((tmp_path / "state" / "mirror" / "uploads").glob("*.json"))
    info = await mirror.inspect(f"docker://{registry.host}/resume/push:v1")
    async with await Layout.open(big_layout) as layout:
        assert info.digest == (await layout.resolve("big")).digest


async def test_a_session_the_registry_forgot_falls_back_to_a_fresh_upload(
    registry: Registry, tmp_path: Path
) -> None:
    from fixtures.generate import make_big_image as make
    from mirror.registry import RegistryOptions
    from mirror.registry.sessions import UploadSession, UploadSessions

    make(tmp_path / "img", "img", 1, 3 * MiB, seed=9)
    async with await Layout.open(tmp_path / "img") as layout:
        manifest = await layout.manifest_get("img")
        layer = manifest.children[1]
    options = RegistryOptions(
        chunked_upload_threshold=MiB, chunk_size=MiB, state_dir=tmp_path / "state"
    )
    stale = f"/v2/resume/forgot/blobs/uploads/{'0' * 8}-dead?_state=bogus"
    UploadSessions(options.upload_state_dir()).save(
        UploadSession(registry.host, "resume/forgot", str(layer.digest), stale, 2 * MiB)
    )
    result = await mirror.copy(
        f"oci:{tmp_path / 'img'}:img", f"docker://{registry.host}/resume/forgot:v1", options=options
    )
    assert result.digest == manifest.digest
    assert not list(options.upload_state_dir().glob("*.json"))
