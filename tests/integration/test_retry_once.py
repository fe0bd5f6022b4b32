"""Retry is decided once: the configured policy reaches every transfer into a layout, and no
retry loop runs inside another (a blob is asked for at most retries + 1 times)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import mirror
from mirror.errors import ServerError
from mirror.registry import RegistryOptions
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_failing_blob_is_asked_for_retries_plus_one_times(
    registry: Registry, tmp_path: Path, retries: int
) -> None:
    registry.push_fixture("oci-single", "retry/app")
    proxy = FaultProxy(registry.host, rate=1.0, faults=("503",), fault_on=r"^GET /v2/.*/blobs/")
    runner = await serve(proxy.app())
    options = RegistryOptions(use_docker_config=False, retries=retries)
    try:
        with pytest.raises(ServerError, match="503"):
            await mirror.copy(
                f"docker://{address(runner)}/retry/app:v1",
                f"oci:{tmp_path / 'out'}:v1",
                options=options,
            )
    finally:
        await runner.cleanup()
    asked = Counter(path for method, path in proxy.seen if "/blobs/" in path and method == "GET")
    assert asked, proxy.seen
    assert max(asked.values()) == retries + 1, asked
    index = tmp_path / "out" / "index.json"
    assert not index.exists() or json.loads(index.read_text())["manifests"] == []
