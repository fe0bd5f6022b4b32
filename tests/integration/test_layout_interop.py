"""Layouts mirror writes are read by skopeo and umoci, and mirror reads theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirror.layout import Layout, verify
from mirror.layout.conformance import check_document
from mirror.oci import mediatypes as mt
from mirror.oci.model import Manifest
from tests.support.layouts import copy_image
from tests.support.registry import Registry
from tests.support.tools import FIXTURES, mirror, skopeo, umoci

SKOPEO_READABLE = ("oci-single", "multi-arch", "artifact")


async def _write_all_fixtures(dst: Path) -> dict[str, str]:
    digests = {}
    for name in ("oci-single", "docker-v2", "multi-arch", "artifact"):
        manifest = await copy_image(FIXTURES / name, "v1", dst, name)
        digests[name] = str(manifest.digest)
    return digests


async def test_mirror_written_layout_is_valid_and_read_by_skopeo_and_umoci(tmp_path: Path) -> None:
    out = tmp_path / "out"
    digests = await _write_all_fixtures(out)

    async with await Layout.open(out) as layout:
        assert await verify(layout, strict=True) == []
    index = json.loads((out / "index.json").read_bytes())
    assert [m["annotations"][mt_ref()] for m in index["manifests"]] == list(digests)

    for name in SKOPEO_READABLE:
        raw = skopeo("inspect", "--raw", f"oci:{out}:{name}").stdout.encode()
        assert mt_digest(raw) == digests[name]
        copied = tmp_path / f"copy-{name}"
        skopeo("copy", "--all", "--preserve-digests", f"oci:{out}:{name}", f"oci:{copied}:x")
        assert (
            json.loads((copied / "index.json").read_bytes())["manifests"][0]["digest"]
            == (digests[name])
        )
    stat = umoci("stat", "--json", "--image", f"{out}:oci-single").stdout
    assert len(json.loads(stat)["history"]) == 1
    result = mirror("layout", "verify", "--strict", str(out))
    assert result.returncode == 0, result.stderr


def mt_ref() -> str:
    return "org.opencontainers.image.ref.name"


def mt_digest(raw: bytes) -> str:
    from mirror.oci.digest import Digest

    return str(Digest.of(raw))


async def test_mirror_reads_layouts_skopeo_wrote(tmp_path: Path, registry: Registry) -> None:
    target = registry.push_fixture("multi-arch", "interop/multi")
    out = tmp_path / "by-skopeo"
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{target}", f"oci:{out}:multi")
    skopeo("copy", f"oci:{FIXTURES / 'oci-single'}:v1", f"oci:{out}:single")
    async with await Layout.open(out) as layout:
        names = [i.name for i in await layout.images()]
        assert names == ["multi", "single"]
        index = await layout.manifest_get("multi")
        assert index.media_type == mt.OCI_INDEX
        assert await verify(layout) == []
    listed = mirror("--json", "layout", "ls", str(out))
    assert [r["name"] for r in json.loads(listed.stdout)] == ["multi", "single"]


async def test_mirror_reads_layouts_umoci_wrote(tmp_path: Path) -> None:
    out = tmp_path / "by-umoci"
    umoci("init", "--layout", str(out))
    umoci("new", "--image", f"{out}:fresh")
    umoci("config", "--image", f"{out}:fresh", "--config.cmd", "/bin/true")
    async with await Layout.open(out) as layout:
        manifest = await layout.manifest_get("fresh")
        assert isinstance(manifest, Manifest)
        assert manifest.config.media_type == mt.OCI_CONFIG
        assert await verify(layout) == []


@pytest.mark.parametrize("name", ["oci-single", "docker-v2", "multi-arch", "artifact"])
async def test_committed_fixtures_are_valid(name: str) -> None:
    async with await Layout.open(FIXTURES / name) as layout:
        assert await verify(layout) == []
        manifest = await layout.manifest_get("v1")
        assert await verify(layout, strict=True) == []
        kind = "index" if manifest.media_type in mt.INDEXES else "manifest"
        assert check_document(kind, json.loads(manifest.raw)) == []
