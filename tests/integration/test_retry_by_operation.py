"""Whether a request is sent again is decided by its operation, and a retried operation never
runs another's retries."""

from __future__ import annotations

from collections import Counter

import pytest
from aiohttp import web

from mirror.errors import ServerError
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve


def _options(retries: int) -> RegistryOptions:
    return RegistryOptions(use_docker_config=False, retries=retries)


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_head_whose_fallback_get_fails_is_not_retried_inside_a_retry(
    registry: Registry, retries: int
) -> None:
    """A HEAD answered without a digest falls back to a GET; that GET failing with 503 is
    asked retries + 1 times in all, and the HEAD once (no retry runs inside another)."""
    registry.push_fixture("oci-single", "nested/app")

    def digestless_head(request: web.Request) -> web.Response | None:
        if request.method == "HEAD" and "/manifests/" in request.path:
            return web.Response(status=200)  # a front end that drops the digest header
        return None

    proxy = FaultProxy(registry.host, rate=1.0, faults=("503",), fault_on=r"^GET /v2/.*/manifests/")
    proxy.answer_instead = digestless_head
    runner = await serve(proxy.app())
    try:
        async with RegistryClient(_options(retries)) as client:
            repo = client.repository(RegistryReference(address(runner), "nested/app"))
            with pytest.raises(ServerError, match="503"):
                await repo.manifest_head("v1")
    finally:
        await runner.cleanup()
    asked = Counter(method for method, path in proxy.seen if "/manifests/" in path)
    assert asked == {"HEAD": 1, "GET": retries + 1}, asked
