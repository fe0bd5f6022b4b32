"""Fixtures for registry tests: a second registry, a read-only one, a counting proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import mirror
from fixtures.generate import make_big_image
from tests.support.disk import small_disk
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


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 5 MB filesystem of its own (tmpfs) under the test's folder."""
    with small_disk(tmp_path / "small-disk") as mount_point:
        yield mount_point


@pytest.fixture(scope="session")
def too_big(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """disk/big:v1, an image of 8 MiB in the registry: more than a 5 MB disk holds."""
    root = tmp_path_factory.mktemp("too-big") / "src"
    make_big_image(root, "big", 2, 4 * 1024 * 1024, seed=9)
    target = f"docker://{registry.host}/disk/big:v1"
    asyncio.run(mirror.copy(f"oci:{root}:big", target))
    registry.push_fixture("oci-single", "disk/small")
    return target


def full_disk_config(host: str, full: Path, healthy: Path) -> str:
    """Two jobs: one into a layout on a full disk, one into a healthy layout."""
    return (
        f'[[jobs]]\nname = "full"\nsource = "{host}/disk/big"\ndestination = "oci:{full}"\n'
        f'[[jobs]]\nname = "healthy"\nsource = "{host}/disk/small"\n'
        f'destination = "oci:{healthy}"\n'
    )
