"""Shared layers cross the wire once (issue 18): mounts from any repository of the destination
registry within a run, and from a blob-location memory kept across runs; bytes counted at a
proxy in front of the real destination registry."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from aiohttp import web

import mirror
from fixtures.generate import LayoutWriter, image
from mirror.registry import RegistryOptions
from mirror.sync.config import load_config
from mirror.sync.run import run_sync
from tests.support.registry import Registry, start_registry
from tests.support.scripted import FaultProxy, address, serve
from tests.support.tags import put_tags
from tests.support.tools import FIXTURES, amirror, fixture_digest

REPOSITORIES = 8
SHARED_LAYERS = 3
LAYER_SIZE = 2 * 1024 * 1024
NO_MEMORY = RegistryOptions(use_docker_config=False, blob_cache=False)


@dataclass(frozen=True)
class Shared:
    """Images in `shared/app0..7:v1` of the source registry, sharing their layers."""

    layer_bytes: int  # the bytes of the distinct layers (what must cross the wire once)
    layers: tuple[str, ...]


@pytest.fixture(scope="module")
def shared(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Shared:
    work = tmp_path_factory.mktemp("shared")
    writer = LayoutWriter(work / "layout")
    files = [{f"layer{i}.bin": random.Random(i).randbytes(LAYER_SIZE)} for i in range(3)]
    for n in range(REPOSITORIES):
        desc = image(writer, files, created=f"2024-04-{n + 1:02d}T00:00:00Z")
        writer.name(desc, f"app{n}")
    writer.close()
    for n in range(REPOSITORIES):
        target = f"docker://{registry.host}/shared/app{n}:v1"
        asyncio.run(mirror.copy(f"oci:{work / 'layout'}:app{n}", target, options=NO_MEMORY))
    blob = work / "layout" / "blobs" / "sha256" / desc["digest"].removeprefix("sha256:")
    manifest = json.loads(blob.read_bytes())
    sizes = {layer["digest"]: layer["size"] for layer in manifest["layers"]}
    return Shared(sum(sizes.values()), tuple(sizes))


@dataclass
class Destination:
    """A fresh registry behind a counting proxy."""

    registry: Registry
    proxy: FaultProxy
    host: str  # the proxy's


@pytest.fixture
async def destination(tmp_path: Path) -> AsyncIterator[Destination]:
    reg = start_registry(tmp_path / "destination")
    proxy = FaultProxy(reg.host, rate=0.0)
    runner = await serve(proxy.app())
    yield Destination(reg, proxy, address(runner))
    await runner.cleanup()
    reg.stop()


async def _copy_in(registry: Registry, destination: Destination, app: str, into: str) -> None:
    """In a new process, copy `shared/<app>` from the source into `<into>` at the destination."""
    done = await amirror(
        "--plain-http",
        "copy",
        f"docker://{registry.host}/shared/{app}:v1",
        f"docker://{destination.host}/{into}:v1",
    )
    assert done.returncode == 0, done.stderr


async def _from_another_registry(
    registry: Registry,
    second_registry: Registry,
    destination: Destination,
    app: str,
    via: str,
    into: str,
    *flags: str,
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Put `shared/<app>` into the second registry as `<via>` (no memory), then, in a new
    process, copy it from there into `<into>` at the destination: the CLI's result and the
    bytes the destination received."""
    await mirror.copy(
        f"docker://{registry.host}/shared/{app}:v1",
        f"docker://{second_registry.host}/{via}:v1",
        options=NO_MEMORY,
    )
    before = destination.proxy.bytes_in
    done = await amirror(
        "--plain-http",
        "--json",
        *flags,
        "copy",
        f"docker://{second_registry.host}/{via}:v1",
        f"docker://{destination.host}/{into}:v1",
    )
    assert done.returncode == 0, done.stderr
    return done, destination.proxy.bytes_in - before


def _sync_config(tmp_path: Path, source: str, destination: str, name: str = "sync.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'[registries."{destination}"]\nplain_http = true\n'
        f'[[jobs]]\nregistry = "{source}"\ninclude = ["shared/*"]\n'
        f'destination = "{destination}"\n'
    )
    return path


async def test_a_sync_uploads_each_shared_layer_once_and_a_later_copy_none(
    registry: Registry,
    second_registry: Registry,
    shared: Shared,
    destination: Destination,
    tmp_path: Path,
) -> None:
    config = load_config(_sync_config(tmp_path, registry.host, destination.host))
    report = await run_sync(config, options=RegistryOptions(use_docker_config=False))
    assert [str(i.status) for i in report.images] == ["copied"] * REPOSITORIES, report.to_json()
    uploaded = destination.proxy.bytes_in
    assert uploaded <= 1.1 * shared.layer_bytes, (uploaded, shared.layer_bytes)
    mounted = sum(i.mounted for i in report.images)
    assert mounted == (REPOSITORIES - 1) * shared.layer_bytes
    # in a new process, the same layers from another registry into a new repository
    args = (registry, second_registry, destination, "app3", "elsewhere/app")
    copied, uploaded = await _from_another_registry(*args, "fresh/app")
    assert json.loads(copied.stdout)["blobsMounted"] >= SHARED_LAYERS  # and the config
    assert uploaded < 64 * 1024  # a config and a manifest
    # with the memory turned off, the layers go up again (and the copy succeeds)
    _, uploaded = await _from_another_registry(*args, "unremembered/app", "--no-blob-cache")
    assert uploaded >= shared.layer_bytes


async def test_a_remembered_repository_that_is_gone_falls_back_to_an_upload(
    registry: Registry,
    second_registry: Registry,
    shared: Shared,
    destination: Destination,
    tmp_path: Path,
) -> None:
    await _copy_in(registry, destination, "app1", "only/app")
    storage = destination.registry.root / "storage" / "docker" / "registry" / "v2" / "repositories"
    shutil.rmtree(storage / "only")  # the remembered repository is gone from the registry
    second, uploaded = await _from_another_registry(
        registry, second_registry, destination, "app1", "gone/app", "next/app"
    )
    assert json.loads(second.stdout)["blobsMounted"] == 0
    assert uploaded >= shared.layer_bytes
    # the stale entries were dropped: the memory now names the new repository
    memory = _memory_file(destination.host)
    blobs = json.loads(memory.read_text())["blobs"]
    assert all("only/app" not in blobs.get(d, {}) for d in shared.layers)
    assert all("next/app" in blobs[d] for d in shared.layers)


async def test_two_processes_at_once_and_a_damaged_memory_lose_nothing(
    registry: Registry, shared: Shared, destination: Destination, tmp_path: Path
) -> None:
    one = _sync_config(tmp_path, registry.host, destination.host, "one.toml")
    results = await asyncio.gather(*(amirror("--json", "sync", str(one)) for _ in range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr
    memory = _memory_file(destination.host)
    blobs = json.loads(memory.read_text())["blobs"]
    assert set(shared.layers) <= set(blobs)
    damages = (memory.read_bytes()[: memory.stat().st_size // 2], b"\x00garbage{")
    for n, damage in enumerate(damages):
        memory.write_bytes(damage)
        await _copy_in(registry, destination, "app5", f"after-damage-{n}/app")
        assert "blobs" in json.loads(memory.read_text())  # rewritten whole
    listed = await amirror("--plain-http", "--json", "ls", destination.host)
    names = set(json.loads(listed.stdout))
    assert {f"shared/app{n}" for n in range(REPOSITORIES)} <= names


def _memory_file(host: str) -> Path:
    import os
    from urllib.parse import quote

    state = Path(os.environ["XDG_STATE_HOME"])
    return state / "mirror" / "blob-locations" / f"{quote(host, safe='')}.json"


async def test_layouts_and_bundles_hold_a_shared_layer_once(
    registry: Registry, shared: Shared, tmp_path: Path
) -> None:
    """One blob store: a backup layout and a bundle of the eight images each hold the
    shared layers once."""
    bundle = tmp_path / "shared.tar"
    images = [f"{registry.host}/shared/app{n}:v1" for n in range(REPOSITORIES)]
    made = await amirror("bundle", "create", str(bundle), *images)
    assert made.returncode == 0, made.stderr
    assert bundle.stat().st_size < 1.1 * shared.layer_bytes
    backup = tmp_path / "backup"
    path = tmp_path / "backup.toml"
    path.write_text(
        f'[[jobs]]\nregistry = "{registry.host}"\ninclude = ["shared/*"]\n'
        f'destination = "oci:{backup}"\n'
    )
    synced = await amirror("sync", str(path))
    assert synced.returncode == 0, synced.stderr
    stored = sum(p.stat().st_size for p in (backup / "blobs").rglob("*") if p.is_file())
    assert stored < 1.1 * shared.layer_bytes


async def test_a_blob_the_registry_lost_before_the_manifest_is_placed_again(
    registry: Registry, tmp_path: Path
) -> None:
    """A manifest PUT answered 400 MANIFEST_BLOB_UNKNOWN (the registry lost track of a blob
    it had taken: a race between concurrent uploads or mounts of it) places the missing blob
    again and puts the manifest once more; here the real registry loses the layer's link
    just before the manifest arrives."""
    target = start_registry(tmp_path / "target")
    layers = target.root / "storage" / "docker" / "registry" / "v2" / "repositories"
    lost: list[Path] = []

    def lose_a_layer(request: web.Request) -> None:
        if request.method == "PUT" and "/manifests/" in request.path and not lost:
            links = sorted((layers / "lost" / "app" / "_layers").rglob("link"))
            lost.append(links[0])
            links[0].unlink()

    proxy = FaultProxy(target.host, rate=0.0, before_forward=lose_a_layer)
    runner = await serve(proxy.app())
    try:
        result = await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1",
            f"docker://{address(runner)}/lost/app:v1",
            options=NO_MEMORY,
        )
    finally:
        await runner.cleanup()
        target.stop()
    assert lost
    assert result.digest == fixture_digest("oci-single")
    assert result.blobs_copied == 4  # three, and the lost one again


async def test_a_blob_goes_into_a_repository_once_per_run(
    registry: Registry, destination: Destination, tmp_path: Path
) -> None:
    """Ten tags of a repository share their blobs; each image's copy would mount them into
    the same destination repository. distribution rewrites a repository's blob link in place
    on every mount, and a manifest PUT that reads it meanwhile fails with "blob unknown"
    (seen in `make bench` growth runs): so a blob placed once in a run is not placed again."""
    await put_tags(registry.host, 1, 10, "once-a")  # the blobs, remembered in once-a/r000 …
    await put_tags(registry.host, 3, 10, "once-b")  # … then needed by 30 images elsewhere
    for prefix in ("once-a", "once-b"):
        config = tmp_path / f"{prefix}.toml"
        config.write_text(
            f'[registries."{destination.host}"]\nplain_http = true\n'
            f'[[jobs]]\nregistry = "{registry.host}"\ninclude = ["{prefix}/*"]\n'
            f'destination = "{destination.host}/copy"\n'
        )
        destination.proxy.seen_queries.clear()
        report = await run_sync(load_config(config))
        assert {i.status for i in report.images} == {"copied"}, report.failed
        placed = Counter(_placements(destination.proxy.seen_queries))
        assert placed, destination.proxy.seen_queries
        assert max(placed.values()) == 1, [k for k, n in placed.items() if n > 1]


def _placements(seen: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(repository, digest) of every mount or upload that puts a blob in place."""
    out = []
    for _method, path, query in seen:
        if "/blobs/uploads/" not in path:
            continue
        asked = parse_qs(query)
        digest = (asked.get("mount") or asked.get("digest") or [""])[0]
        if digest:
            out.append((path.split("/blobs/")[0], digest))
    return out
