"""A pull or push killed with SIGKILL in the middle of a 256 MiB blob resumes where it stopped:
the second run moves at most 10% more than what was left."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
    args: list[str],
    env: dict[str, str],
    ready: Callable[[], bool],
    settle: float = 0.0,
    before_kill: Callable[[], None] | None = None,
) -> None:
    """Run `mirror ARGS`; once `ready()`, wait `settle` seconds, call `before_kill`, and
    SIGKILL it."""
    proc = await _start(args, env)
    for _ in range(6000):
        if ready() or proc.returncode is not None:
            break
        await asyncio.sleep(0.005)
    assert proc.returncode is None, "the transfer finished before it could be killed"
    await asyncio.sleep(settle)
    if before_kill is not None:
        before_kill()
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def _run(args: list[str], env: dict[str, str]) -> None:
    proc = await _start(args, env)
    _, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, err.decode()


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


async def _resumed_pull(proxy: FaultProxy, args: list[str], tmp_path: Path, out: Path) -> int:
    """Run the killed pull `args` again to its end; the bytes it fetched through `proxy`
    (the layout `out` it leaves verifies whole)."""
    proxy.bytes_out = 0
    await _run(args, _env(tmp_path))
    async with await Layout.open(out) as layout:
        assert await verify(layout) == []
    return proxy.bytes_out


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
    fetched = await _resumed_pull(proxy, args, tmp_path, out)
    left = SIZE - done
    assert fetched <= left * 1.10 + MiB, (fetched, left)


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


#: issue 29, target 7: a transfer killed when half the image has moved re-sends at most this
#: share of it when it resumes
RESENT_AT_MOST = 0.02


@dataclass
class Halted:
    """What had moved when a transfer was killed at half: every byte the proxy passed on or
    took in, and of those sent, what the kernel still held unread for the killed client."""

    moved: int
    unread: int = 0


async def _kill_at_half(
    args: list[str],
    env: dict[str, str],
    proxy: tuple[FaultProxy, str],
    moved: Callable[[], int],
    size: int = SIZE,
) -> Halted:
    """Run `mirror ARGS` through the proxy (and its address), which holds every transfer once
    half the image (of `size` bytes) has moved, SIGKILL it there, and let the proxy drop what
    it held."""
    fault_proxy, address = proxy
    fault_proxy.hold_after_bytes = size // 2
    halted = Halted(0)

    def measure() -> None:
        halted.moved, halted.unread = moved(), _unread(address)

    await _run_and_kill_when(args, env, fault_proxy.held.is_set, 0.3, measure)
    fault_proxy.let_go.set()
    return halted


def _unread(server: str) -> int:
    """Bytes the kernel holds for this machine's clients of `server` (`127.0.0.1:PORT`) that
    they have not read (the receive queues of their sockets, /proc/net/tcp)."""
    port = f"{int(server.rpartition(':')[2]):04X}"
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{port}"):  # the remote end is the server: a client's socket
            total += int(fields[4].partition(":")[2], 16)
    return total


#: the layers pulled: one fetched as parallel ranges (over the threshold; half of it is in
#: the middle of a part), one as one stream
RANGED, STREAMED = 300 * MiB, 100 * MiB


@pytest.fixture(scope="module")
def pull_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Layouts of one image of one random layer each, by the layer's size."""
    made = {}
    for seed, size in enumerate((RANGED, STREAMED)):
        made[size] = tmp_path_factory.mktemp(f"pull-{size}") / "layout"
        make_big_image(made[size], "big", 1, size, seed=50 + seed)
    return made


@pytest.mark.slow
@pytest.mark.parametrize("ranged", [True, False], ids=["ranged", "streamed"])
async def test_a_pull_killed_at_half_re_sends_at_most_2_percent(
    registry: Registry,
    pull_layouts: dict[int, Path],
    counting_proxy: tuple[FaultProxy, str],
    tmp_path: Path,
    ranged: bool,
) -> None:
    """The bytes the resumed run fetches that the killed one had already taken in (the parts
    in flight since their last checkpoint, what was not yet written). What the kernel held for
    the killed process and the process never read (its sockets' receive queues, which on
    loopback fill up to megabytes a connection when the client is the slower end) is not
    counted: no client keeps that."""
    size = RANGED if ranged else STREAMED
    layout = pull_layouts[size]
    name = f"resume/half-pull-{'ranged' if ranged else 'streamed'}:v1"
    await mirror.copy(f"oci:{layout}:big", f"docker://{registry.host}/{name}")
    proxy, host = counting_proxy
    out = tmp_path / "pulled"
    args = ["pull", f"{host}/{name}", str(out)]
    halted = await _kill_at_half(
        args, _env(tmp_path), counting_proxy, lambda: proxy.bytes_out, size
    )
    received = halted.moved - halted.unread
    assert size // 3 < received < size
    fetched = await _resumed_pull(proxy, args, tmp_path, out)
    resent = fetched - (size - received)
    assert resent <= size * RESENT_AT_MOST, (received, fetched, resent / size)


@pytest.mark.slow
async def test_a_push_killed_at_half_re_sends_at_most_2_percent(
    registry: Registry, big_layout: Path, counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    """The same for a push through a front end that buffers request bodies (a chunk cut
    short never reaches the registry): every upload byte that arrived at the front end before
    the kill and after it, less the image."""
    proxy, host = counting_proxy
    args = ["push", f"{big_layout}:big", f"{host}/resume/half-push:v1"]
    halted = await _kill_at_half(args, _env(tmp_path), counting_proxy, lambda: proxy.bytes_arrived)
    before = halted.moved
    proxy.bytes_arrived = 0
    await _run(args, _env(tmp_path))
    resent = before + proxy.bytes_arrived - SIZE
    assert resent <= SIZE * RESENT_AT_MOST, (before, proxy.bytes_arrived, resent / SIZE)
    info = await mirror.inspect(f"docker://{registry.host}/resume/half-push:v1")
    async with await Layout.open(big_layout) as layout:
        assert info.digest == (await layout.resolve("big")).digest
