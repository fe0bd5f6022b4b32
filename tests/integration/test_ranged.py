"""Large blobs fetched as parallel ranges: identical bytes, resumable by part, and a server
that ignores Range still works."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

import mirror
from fixtures.generate import make_big_image
from mirror.archive.bundle import create_bundle
from mirror.endpoint import RangeFetcher, bytes_source
from mirror.layout import Layout, verify
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor
from mirror.registry import RegistryOptions
from mirror.sync.config import load_config
from mirror.sync.run import run_sync
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, ScriptedProxy, address, serve

MiB = 1024 * 1024
RANGED = RegistryOptions(
    use_docker_config=False, ranged_download_threshold=2 * MiB, chunk_size=MiB, ranged_parallel=3
)


@pytest.fixture(scope="module")
def seeded_big(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A layout with 2 random layers of 5.5 MiB, pushed as ranged/big:v1."""
    import asyncio

    root = tmp_path_factory.mktemp("ranged") / "src"
    make_big_image(root, "big", 2, 5 * MiB + MiB // 2, seed=5)
    ref = f"docker://{registry.host}/ranged/big:v1"
    asyncio.run(mirror.copy(f"oci:{root}:big", ref))
    return root, ref


def _same_blobs(a: Path, b: Path) -> None:
    for blob in (a / "blobs" / "sha256").iterdir():
        assert (b / "blobs" / "sha256" / blob.name).read_bytes() == blob.read_bytes()


async def test_parallel_ranges_give_identical_bytes(
    seeded_big: tuple[Path, str], tmp_path: Path
) -> None:
    source, ref = seeded_big
    result = await mirror.copy(ref, f"oci:{tmp_path / 'out'}:big", options=RANGED)
    assert result.blobs_copied == 3
    _same_blobs(source, tmp_path / "out")
    async with await Layout.open(tmp_path / "out") as layout:
        assert await verify(layout) == []
    assert not list((tmp_path / "out" / ".mirror" / "partial").iterdir())


async def test_a_server_ignoring_range_still_works(
    registry: Registry, seeded_big: tuple[Path, str], tmp_path: Path
) -> None:
    source, ref = seeded_big
    runner = await serve(ScriptedProxy(registry.host, ignore_range=True).app())
    try:
        through = ref.replace(registry.host, address(runner))
        await mirror.copy(through, f"oci:{tmp_path / 'out'}:big", options=RANGED)
    finally:
        await runner.cleanup()
    _same_blobs(source, tmp_path / "out")


async def test_ranged_download_survives_faults(
    registry: Registry, seeded_big: tuple[Path, str], tmp_path: Path
) -> None:
    source, ref = seeded_big
    proxy = FaultProxy(registry.host, rate=0.25, seed=11)
    runner = await serve(proxy.app())
    try:
        through = ref.replace(registry.host, address(runner))
        await mirror.copy(through, f"oci:{tmp_path / 'out'}:big", options=RANGED)
    finally:
        await runner.cleanup()
    _same_blobs(source, tmp_path / "out")
    assert proxy.bytes_out <= 2 * 11 * MiB


async def test_ranged_parts_resume_in_a_later_run(tmp_path: Path) -> None:
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB
    desc = Descriptor(mt.OCI_LAYER_TAR, Digest.of(data), len(data))
    asked: list[tuple[int, int]] = []

    def fetcher(fail_from: int | None) -> RangeFetcher:
        async def fetch(start: int, end: int) -> AsyncGenerator[bytes, None]:
            asked.append((start, end))
            if fail_from is not None and start >= fail_from:
                raise ConnectionResetError("the process gives up")
            yield data[start:end]

        return fetch

    async with await Layout.open(tmp_path / "l", create=True) as layout:
        with pytest.raises(ConnectionResetError):
            await layout.blob_put_ranged(
                desc,
                fetcher(4 * MiB),
                part_size=MiB,
                parallel=1,
                fallback=bytes_source(data),
            )
        assert not layout.blob_path(desc.digest).exists()
    sidecar = next((tmp_path / "l" / ".mirror" / "partial").glob("*.ranges"))
    done = set(json.loads(sidecar.read_text())["done"])
    assert done
    assert 4 * MiB not in done
    asked.clear()
    async with await Layout.open(tmp_path / "l") as layout:
        await layout.blob_put_ranged(
            desc,
            fetcher(None),
            part_size=MiB,
            parallel=2,
            fallback=bytes_source(data),
        )
        assert layout.blob_path(desc.digest).read_bytes() == data
    assert sorted(start for start, _ in asked) == sorted(set(range(0, 10 * MiB, MiB)) - done)


async def test_a_blob_of_many_parts_runs_a_fixed_number_of_tasks(tmp_path: Path) -> None:
    """However many parts a blob declares, parts are capped and only `parallel` fetches (and
    tasks) run at once (issue 16: a 10 TiB layer made ~650,000 coroutines)."""
    import asyncio

    from mirror.layout.ranged import MAX_PARTS

    data = bytes(range(256)) * 40  # 10,240 bytes: 10,240 one-byte parts asked for
    desc = Descriptor(mt.OCI_LAYER_TAR, Digest.of(data), len(data))
    running, most, tasks, ranges = 0, 0, 0, []

    async def fetch(start: int, end: int) -> AsyncGenerator[bytes, None]:
        nonlocal running, most, tasks
        running += 1
        most, tasks = max(most, running), max(tasks, len(asyncio.all_tasks()))
        ranges.append((start, end))
        await asyncio.sleep(0)
        yield data[start:end]
        running -= 1

    async with await Layout.open(tmp_path / "l", create=True) as layout:
        await layout.blob_put_ranged(
            desc, fetch, part_size=1, parallel=3, fallback=bytes_source(data)
        )
        assert await layout.blob_exists(desc)
    assert len(ranges) <= MAX_PARTS
    assert most <= 3
    assert tasks <= 3 + 2  # the parts' workers, the test, and nothing per part


async def _ranged_requests(registry: Registry, work: Callable[[str], Awaitable[None]]) -> int:
    """Run `work` with the registry behind a proxy; how many blob GETs asked for a range."""
    ranged: list[str] = []

    def note(request: web.Request) -> None:
        if request.method == "GET" and "/blobs/" in request.path and "Range" in request.headers:
            ranged.append(request.headers["Range"])

    proxy = FaultProxy(registry.host, rate=0.0, before_forward=note)
    runner = await serve(proxy.app())
    try:
        await work(address(runner))
    finally:
        await runner.cleanup()
    return len(ranged)


async def test_a_sync_into_a_layout_fetches_large_blobs_as_ranges(
    registry: Registry, seeded_big: tuple[Path, str], tmp_path: Path
) -> None:
    source, _ = seeded_big
    config = tmp_path / "sync.toml"
    config.write_text(
        f'[[jobs]]\nsource = "PROXY/ranged/big"\ndestination = "oci:{tmp_path / "out"}"\n'
    )

    async def sync(host: str) -> None:
        config.write_text(config.read_text().replace("PROXY", host))
        report = await run_sync(load_config(config), options=RANGED)
        assert [i.status for i in report.images] == ["copied"]

    assert await _ranged_requests(registry, sync) >= 6  # two 5.5 MiB layers in 1 MiB parts
    _same_blobs(source, tmp_path / "out")


async def test_bundle_create_fetches_large_blobs_as_ranges(
    registry: Registry, seeded_big: tuple[Path, str], tmp_path: Path
) -> None:
    async def create(host: str) -> None:
        await create_bundle(tmp_path / "b.tar", [f"{host}/ranged/big:v1"], options=RANGED)

    assert await _ranged_requests(registry, create) >= 6
