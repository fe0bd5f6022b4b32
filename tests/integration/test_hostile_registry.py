"""Hostile registries: every wait, listing, walk and declared size is bounded (issue 16,
observations 9-14). Each run ends in one clear line, exit 1, in bounded time and memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import mirror
from mirror import graph
from mirror.graph import GraphTooLarge
from tests.support.bounded import MEMORY_MIB, Bounded, abounded_mirror, assert_refused
from tests.support.hostile import (
    OCI_INDEX,
    OCI_MANIFEST,
    HostileRegistry,
    canonical,
    digest_of,
    image,
)
from tests.support.scripted import serving


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[HostileRegistry, str]]:
    """A hostile registry on a free loopback port, and its host:port."""
    registry = HostileRegistry()
    async with serving(registry.app()) as host:
        yield registry, host


FAST_STALL = ("--stall-timeout", "2", "--retries", "0")


async def pull(host: str, tag: str, out: Path, *flags: str, within: float = 60) -> Bounded:
    """`mirror [FLAGS] copy docker://HOST/app:TAG oci:OUT:TAG`, bounded."""
    return await abounded_mirror(
        *flags, "copy", f"docker://{host}/app:{tag}", f"oci:{out}:{tag}", within=within
    )


# 9. slowloris: a byte a second never keeps a run alive


@pytest.mark.parametrize("kind", ["manifest", "blob"])
async def test_a_trickled_body_ends_as_stalled(
    hostile: tuple[HostileRegistry, str], kind: str, tmp_path: Path
) -> None:
    registry, host = hostile
    image(registry, "v1", layer=b"x" * 5000)
    registry.trickle[kind] = 1.0
    result = await pull(host, "v1", tmp_path / "out", *FAST_STALL, within=40)
    assert_refused(result, "stalled")


async def test_a_trickled_token_endpoint_ends_as_stalled(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    image(registry, "v1")
    registry.bearer_realm = f"http://{host}/token"
    registry.trickle["token"] = 1.0
    result = await pull(host, "v1", tmp_path / "out", *FAST_STALL, within=40)
    assert_refused(result, "token server", "stalled")


# 10. listings end


@pytest.mark.parametrize("listing", ["tags", "ls"])
async def test_an_endless_listing_is_cut_off(
    hostile: tuple[HostileRegistry, str], listing: str
) -> None:
    registry, host = hostile
    registry.paging = "endless"
    target = f"{host}/app" if listing == "tags" else host
    result = await abounded_mirror(listing, target, within=120)
    assert_refused(result, "more than 1000000 items")


async def test_a_listing_that_links_back_is_an_error(
    hostile: tuple[HostileRegistry, str],
) -> None:
    registry, host = hostile
    registry.paging = "loop"
    result = await abounded_mirror("tags", f"{host}/app", within=30)
    assert_refused(result, "links back")


async def test_sync_over_an_endless_listing_ends(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    registry.paging = "endless"
    config = tmp_path / "mirror.toml"
    config.write_text(f'[[jobs]]\nsource = "{host}/app"\ndestination = "oci:{tmp_path / "o"}"\n')
    result = await abounded_mirror("sync", str(config), "--dry-run", within=120)
    assert not result.timed_out
    assert result.returncode == 1
    assert "more than 1000000 items" in result.stderr
    assert result.peak_mib < MEMORY_MIB


# 11. graph walks: a visited set and a depth limit


def _ladder(registry: HostileRegistry, depth: int, tag: str) -> None:
    """Indexes `depth` deep, each listing the next level twice, over one small image."""
    below = image(registry, f"{tag}-base")
    for level in range(depth):
        twice = [
            {**below, "platform": {"os": "linux", "architecture": arch}}
            for arch in ("amd64", "arm64")
        ]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": twice}
        below = registry.add_manifest(index, tag if level == depth - 1 else None)


async def test_bundle_create_refuses_an_index_nested_too_deep(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    _ladder(registry, 40, "deep")
    result = await abounded_mirror(
        "bundle", "create", str(tmp_path / "b.tar"), f"{host}/app:deep", within=60
    )
    assert_refused(result, "deeper than 8 levels")
    assert not (tmp_path / "b.tar").exists()


async def test_bundle_create_walks_a_diamond_graph_once(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    _ladder(registry, 7, "wide")
    result = await abounded_mirror(
        "bundle", "create", str(tmp_path / "b.tar"), f"{host}/app:wide", within=60
    )
    assert result.returncode == 0, result.stderr
    assert registry.requests < 40  # each of 8 manifests and 2 blobs once, not 2^7 times


async def test_copy_refuses_1500_nested_indexes_in_one_line(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    below = image(registry, "base")
    for level in range(1500):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [below]}
        below = registry.add_manifest(index, "nest" if level == 1499 else None)
    result = await pull(host, "nest", tmp_path / "out", within=60)
    assert_refused(result, "deeper than 8 levels")


# 12. declared sizes are checked before anything is allocated


def _huge(registry: HostileRegistry, size: int, tag: str) -> None:
    config = registry.add_blob(canonical({"architecture": "amd64", "os": "linux"}))
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": "sha256:" + "ab" * 32,
        "size": size,
    }
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    registry.add_manifest(manifest, tag)


async def test_a_10_tib_layer_is_refused_before_any_file(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    _huge(registry, 10 * 1024**4, "huge")
    out = tmp_path / "out"
    result = await pull(host, "huge", out)
    assert_refused(result, "over the 1099511627776 byte limit")
    partial = out / ".mirror" / "partial"
    assert not partial.exists() or not any(partial.iterdir())


async def test_a_size_of_2_to_the_70_is_one_line(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    _huge(registry, 2**70, "absurd")
    result = await pull(host, "absurd", tmp_path / "out")
    assert_refused(result, "64-bit")


# 13. parsing errors of any depth are one line


async def test_json_nested_100000_deep_is_one_line(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    deep = '{"schemaVersion":2,"mediaType":"%s","x":%s}' % (  # noqa: UP031
        OCI_MANIFEST,
        "[" * 100_000 + "]" * 100_000,
    )
    raw = deep.encode()
    registry.manifests[digest_of(raw)] = (raw, OCI_MANIFEST)
    registry.tags["deep"] = digest_of(raw)
    result = await pull(host, "deep", tmp_path / "out")
    assert_refused(result, "nested too deeply")


async def test_a_token_with_cr_lf_is_one_line(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    image(registry, "v1")
    registry.bearer_realm = f"http://{host}/token"
    registry.token_value = "abc\r\nX-Injected: yes"
    result = await pull(host, "v1", tmp_path / "out")
    assert_refused(result, "header cannot carry")


# 14. registry tags meet the user's filters only when sane, and in bounded time


async def test_tag_filters_take_bounded_time_on_hostile_tags(
    hostile: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    registry, host = hostile
    good = image(registry, "v1")
    evil = "a" * 40 + "!"  # breaks the grammar; a backtracking trap for the filter below
    spin = "a" * 60 + "_"  # valid, no match, and exponential for a backtracking engine
    for tag in (evil, spin, "-leading-dash"):
        registry.tags[tag] = good["digest"]
    config = tmp_path / "mirror.toml"
    config.write_text(
        f'[[jobs]]\nsource = "{host}/app"\ndestination = "oci:{tmp_path / "o"}"\n'
        '[jobs.tags]\ninclude = ["^([a-z0-9]+-?)+$"]\n'
    )
    result = await abounded_mirror("--json", "sync", str(config), "--dry-run", within=60)
    assert not result.timed_out
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    sources = sorted(i["source"].rsplit(":", 1)[1] for i in report["images"])
    assert sources == ["v1"]
    assert "left out 2 tags that break the tag grammar" in result.stderr


async def test_a_chain_of_digest_tags_spends_one_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 25, item 9: each digest-tag hop (a signature of a signature …) with its own
    referrers got a fresh manifest budget, so a chain copied far more than the bound; one
    budget covers the image and everything attached to it."""
    monkeypatch.setattr(graph, "MAX_MANIFESTS", 300)
    registry = HostileRegistry()
    empty = registry.add_blob(b"{}", "application/vnd.oci.empty.v1+json")
    subject = image(registry, "v1")
    for hop in range(4):  # 4 hops x (100 referrers + 1 signature): 405 manifests, 101 a hop
        referrers = [
            registry.add_manifest(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": "application/example",
                    "config": empty,
                    "layers": [empty],
                    "subject": subject,
                    "annotations": {"n": f"{hop}-{n}"},
                }
            )
            for n in range(100)
        ]
        tag = "sha256-" + subject["digest"].removeprefix("sha256:")
        registry.add_manifest(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": referrers}, tag
        )
        subject = registry.add_manifest(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": empty,
                "layers": [empty],
                "annotations": {"signature": str(hop)},
            },
            f"{tag}.sig",
        )
    async with serving(registry.app()) as host:
        with pytest.raises(GraphTooLarge, match="more than 300 manifests"):
            await mirror.copy(
                f"docker://{host}/app:v1", f"oci:{tmp_path / 'out'}:v1", referrers=True
            )
