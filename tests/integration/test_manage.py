"""The management API and CLI against the real registry (no metadata API: derived properties)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

import mirror
from fixtures.generate import LayoutWriter, image
from mirror.errors import InvalidReference, ManifestNotFound, UnsupportedOperation
from mirror.manage import ContainerRegistryClient, ContainerRegistryContentClient, ManifestOrder
from mirror.oci.digest import Digest
from tests.support.registry import Registry
from tests.support.tools import amirror


async def _push_dated(registry: Registry, tmp_path: Path, repo: str, days: int) -> list[str]:
    """Images built on 2024-01-01 .. 2024-01-<days>, tagged t1..tN; digests oldest first."""
    digests = []
    for day in range(1, days + 1):
        root = tmp_path / f"img{day}"
        writer = LayoutWriter(root)
        desc = image(writer, [{"day": str(day).encode()}], created=f"2024-01-{day:02d}T00:00:00Z")
        writer.name(desc, "v")
        writer.close()
        result = await mirror.copy(f"oci:{root}:v", f"docker://{registry.host}/{repo}:t{day}")
        digests.append(result.digest)
    return digests


def _client(registry: Registry) -> ContainerRegistryClient:
    return ContainerRegistryClient(f"http://{registry.host}")


async def test_list_properties_and_time_order(registry: Registry, tmp_path: Path) -> None:
    digests = await _push_dated(registry, tmp_path, "manage/app", 4)
    await mirror.copy(
        f"docker://{registry.host}/manage/app:t4", f"docker://{registry.host}/manage/app:latest"
    )
    async with _client(registry) as client:
        assert not await client.is_acr()
        assert "manage/app" in [n async for n in client.list_repository_names()]
        repo = client.get_repository("manage/app")
        newest = [m async for m in repo.list_manifest_properties(order_by=ManifestOrder.NEWEST)]
        assert [m.digest for m in newest] == digests[::-1]
        assert newest[0].tags == ("latest", "t4")
        assert newest[0].created_on is not None
        assert newest[0].created_on.day == 4
        assert (newest[0].architecture, newest[0].operating_system) == ("amd64", "linux")
        oldest = [m async for m in repo.list_manifest_properties(order_by=ManifestOrder.OLDEST)]
        assert [m.digest for m in oldest] == digests
        props = await repo.get_properties()
        assert (props.manifest_count, props.tag_count) == (4, 5)
        artifact = repo.get_artifact("latest")
        assert await artifact.digest() == digests[3]
        assert [t.name async for t in artifact.list_tag_properties()] == ["latest", "t4"]
        assert artifact.fully_qualified_reference == f"{registry.host}/manage/app:latest"
        with pytest.raises(UnsupportedOperation, match="not supported by this registry"):
            await repo.update_properties(can_write=False)
        with pytest.raises(UnsupportedOperation, match="not supported by this registry"):
            await artifact.update_tag_properties("latest", can_delete=False)
    cli = await amirror("--json", "manifests", f"{registry.host}/manage/app", "--order", "oldest")
    assert [m["digest"] for m in json.loads(cli.stdout)] == digests
    tags = await amirror("--json", "tags", "--properties", f"{registry.host}/manage/app")
    assert {t["name"] for t in json.loads(tags.stdout)} == {"t1", "t2", "t3", "t4", "latest"}
    locked = await amirror("props", f"{registry.host}/manage/app:t1", "--can-write", "false")
    assert locked.returncode == 1
    assert locked.stderr.count("\n") == 1
    assert "not supported by this registry" in locked.stderr


async def test_delete_tag_manifest_and_prune(registry: Registry, tmp_path: Path) -> None:
    digests = await _push_dated(registry, tmp_path, "manage/prune", 6)
    await mirror.copy(
        f"docker://{registry.host}/manage/prune:t6", f"docker://{registry.host}/manage/prune:top"
    )
    async with _client(registry) as client:
        repo = client.get_repository("manage/prune")
        await repo.get_artifact("t1").delete_tag("t1")  # the only tag: its manifest goes
        with pytest.raises(UnsupportedOperation, match="also carries top"):
            await repo.get_artifact("t6").delete_tag("t6")
        await repo.get_artifact(digests[1]).delete()
        with pytest.raises(ManifestNotFound):
            await repo.get_artifact("t2").digest()
    missing = await amirror("delete", f"{registry.host}/manage/prune:nope")
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)
    assert "not found" in missing.stderr
    dry = await amirror(
        "--json", "prune", f"{registry.host}/manage/prune", "--keep", "3", "--dry-run"
    )
    assert [m["digest"] for m in json.loads(dry.stdout)["deleted"]] == [digests[2]]
    pruned = await amirror("prune", f"{registry.host}/manage/prune", "--keep", "3")
    assert pruned.returncode == 0, pruned.stderr
    async with _client(registry) as client:
        left = [
            m.digest async for m in client.get_repository("manage/prune").list_manifest_properties()
        ]
    assert left == [digests[5], digests[4], digests[3]]


async def test_the_library_prunes_by_creation_time(registry: Registry, tmp_path: Path) -> None:
    """`ContainerRepository.prune` is the policy the CLI calls: newest N kept, by the
    image's creation time on a registry without a metadata API."""
    digests = await _push_dated(registry, tmp_path, "manage/lib-prune", 4)
    async with _client(registry) as client:
        repo = client.get_repository("manage/lib-prune")
        doomed = await repo.prune(2, dry_run=True)
        assert [m.digest for m in doomed] == [digests[1], digests[0]]
        assert len([m async for m in repo.list_manifest_properties()]) == 4
        deleted = await repo.prune(2)
        assert [m.digest for m in deleted] == [digests[1], digests[0]]
        left = [m.digest async for m in repo.list_manifest_properties()]
        assert left == [digests[3], digests[2]]
        with pytest.raises(InvalidReference, match="keep takes 0 or more"):
            await repo.prune(-1)


async def test_bad_names_are_one_line(registry: Registry) -> None:
    bad = await amirror("manifests", f"{registry.host}/Bad_Name")
    assert (bad.returncode, bad.stderr.count("\n")) == (1, 1)
    assert "Bad_Name" in bad.stderr


async def test_content_client_round_trip(registry: Registry) -> None:
    async with ContainerRegistryContentClient(f"http://{registry.host}", "manage/content") as c:
        config = await c.upload_blob(b'{"architecture":"amd64","os":"linux"}')

        async def stream() -> AsyncGenerator[bytes, None]:
            for part in (b"layer ", b"bytes ", b"streamed"):
                yield part

        layer = await c.upload_blob(stream())
        from_file = await c.upload_blob(io.BytesIO(b"layer bytes streamed"))
        assert from_file == layer
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config.digest,
                "size": config.size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.digest,
                    "size": layer.size,
                }
            ],
        }
        digest = await c.set_manifest(manifest, tag="demo")
        fetched = await c.get_manifest("demo")
        assert fetched.digest == digest
        assert fetched.manifest["layers"][0]["digest"] == layer.digest
        assert Digest.of(fetched.content) == digest
        download = await c.download_blob(layer.digest)
        assert b"".join([chunk async for chunk in download.content]) == b"layer bytes streamed"
        await c.delete_manifest(digest)
        with pytest.raises(ManifestNotFound):
            await c.get_manifest(digest)
        await c.delete_blob(layer.digest)
        with pytest.raises(mirror.BlobNotFound):
            await c.download_blob(layer.digest)


async def test_delete_repository(registry: Registry, tmp_path: Path) -> None:
    await _push_dated(registry, tmp_path, "manage/gone", 2)
    async with _client(registry) as client:
        await client.delete_repository("manage/gone")
        left = [m async for m in client.get_repository("manage/gone").list_manifest_properties()]
    assert left == []
