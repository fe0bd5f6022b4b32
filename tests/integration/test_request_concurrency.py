"""Cheap requests are not queued behind transfers (issue 17): existence checks and listings,
and blobs small enough that a round trip costs more than their bytes, go at their own wider
concurrency; large blobs stay at `concurrency`. Proved by what a proxy in front of the real
registry sees in flight at once, each request held 0.2 s as a far registry would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import mirror
from fixtures.generate import make_big_image
from mirror.registry import RegistryOptions
from mirror.sync.config import load_config
from mirror.sync.run import run_sync
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve
from tests.support.tools import FIXTURES

TAGS = 24


@pytest.fixture
async def far(registry: Registry) -> AsyncIterator[tuple[FaultProxy, str]]:
    """The registry behind a proxy that holds every request 0.2 s."""
    proxy = FaultProxy(registry.host, rate=0.0, request_delay=0.2)
    runner = await serve(proxy.app())
    yield proxy, address(runner)
    await runner.cleanup()


async def test_a_no_op_sync_asks_its_heads_together(
    registry: Registry, far: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    for number in range(TAGS):
        await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{registry.host}/conc/src:t{number:02d}"
        )
    proxy, host = far
    config = tmp_path / "sync.toml"
    config.write_text(
        f'[defaults]\nconcurrency = 2\n[[jobs]]\nsource = "{host}/conc/src"\n'
        f'destination = "{host}/conc/dst"\n'
    )
    await run_sync(load_config(config))  # the first run copies
    proxy.peak_in_flight.clear()
    again = await run_sync(load_config(config), verify_destination=True)
    assert {i.status for i in again.images} == {"up-to-date"}
    # both sides' HEADs of every tag at once, not `concurrency` (2) at a time
    assert proxy.peak_in_flight["HEAD manifest"] >= 2 * TAGS
    proxy.peak_in_flight.clear()
    proxy.seen.clear()
    recorded = await run_sync(load_config(config))
    assert {i.status for i in recorded.images} == {"up-to-date"}
    # the destination's record stands in for its HEADs: the source's, all at once
    assert proxy.peak_in_flight["HEAD manifest"] >= TAGS
    assert [p for m, p in proxy.seen if m == "HEAD" and p.startswith("/v2/conc/dst")] == []


async def test_small_blobs_go_wide_and_large_ones_stay_bounded(
    registry: Registry, far: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    proxy, host = far
    for name, layers, size in (("small", 20, 16 * 1024), ("large", 6, 2 * 1024 * 1024)):
        layout = tmp_path / name
        make_big_image(layout, name, layers, size, seed=len(name))
        await mirror.copy(f"oci:{layout}:{name}", f"docker://{registry.host}/conc/{name}:v1")
        proxy.peak_in_flight.clear()
        await mirror.copy(
            f"docker://{host}/conc/{name}:v1",
            f"oci:{tmp_path / 'out'}:{name}",
            options=RegistryOptions(concurrency=2),
        )
        peak = proxy.peak_in_flight["GET blob"]
        if name == "small":
            assert peak >= layers, peak  # all at once: round trips, not bandwidth
        else:
            assert peak <= 3, peak  # two large at a time (and the small config beside them)
