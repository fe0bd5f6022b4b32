"""Fixtures for registry tests: a second registry, a read-only one, a counting proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.registry import Registry, start_registry
from tests.support.scripted import FaultProxy, address, serve

READ_ONLY = """\
  maintenance:
    readonly:
      enabled: true
"""


@pytest.fixture(scope="session")
def second_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Another registry, so registry-to-registry copies cross hosts (no mount possible)."""
    reg = start_registry(tmp_path_factory.mktemp("registry2"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def readonly_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry in read-only maintenance mode: every write is refused."""
    reg = start_registry(tmp_path_factory.mktemp("registry-ro"), storage_extra=READ_ONLY)
    yield reg
    reg.stop()


@pytest.fixture
async def counting_proxy(registry: Registry) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A proxy in front of the registry that injects nothing and counts requests and blob
    bytes each way; yields it and its `host:port`."""
    proxy = FaultProxy(registry.host, rate=0.0)
    runner = await serve(proxy.app())
    yield proxy, address(runner)
    await runner.cleanup()
