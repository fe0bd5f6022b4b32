"""Pull and push through a proxy that injects faults on 20% of requests, in front of the
real registry: both succeed, digests are equal, and bytes sent twice stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

import mirror
from fixtures.generate import make_big_image
from mirror.layout import Layout, verify
from mirror.registry import RegistryOptions
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve

MiB = 1024 * 1024
LAYERS, LAYER_SIZE = 3, 6 * MiB


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_pull_and_push_survive_injected_faults(
    registry: Registry, tmp_path: Path, seed: int
) -> None:
    source_dir = tmp_path / "src"
    make_big_image(source_dir, "big", LAYERS, LAYER_SIZE, seed=seed)
    proxy = FaultProxy(registry.host, rate=0.2, seed=seed)
    runner = await serve(proxy.app())
    host = address(runner)
    options = RegistryOptions(
        use_docker_config=False,
        chunked_upload_threshold=4 * MiB,  # every layer goes up in resumable chunks
        chunk_size=1 * MiB,
        state_dir=tmp_path / "state",
    )
    total = LAYERS * LAYER_SIZE
    try:
        pushed = await mirror.copy(
            f"oci:{source_dir}:big", f"docker://{host}/faults/big{seed}:v1", options=options
        )
        pulled = await mirror.copy(
            f"docker://{host}/faults/big{seed}:v1", f"oci:{tmp_path / 'back'}:big", options=options
        )
    finally:
        await runner.cleanup()
    assert sum(proxy.injected.values()) >= 5, proxy.injected
    assert pulled.digest == pushed.digest
    async with await Layout.open(source_dir) as src:
        assert (await src.resolve("big")).digest == pushed.digest
    async with await Layout.open(tmp_path / "back") as back:
        assert await verify(back) == []
    # what was sent twice is bounded: at most one extra copy of the data each way, plus a
    # layer for each PATCH that the registry took but whose answer was lost (after-500):
    # distribution's next upload URL came in that answer, so the upload starts over
    lost = proxy.injected_on.count(("PATCH", "after-500"))
    assert total <= proxy.bytes_in <= 2 * total + lost * LAYER_SIZE, proxy.bytes_in
    assert total <= proxy.bytes_out <= 2 * total, proxy.bytes_out
    assert pushed.bytes_copied >= total
