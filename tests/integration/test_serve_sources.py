"""What `mirror serve` serves from: a layout that `mirror sync` is writing is served
consistently (every tag listed is whole, every time it is asked), and archives side by side
serve as one (a blob from whichever archive holds it, as a bundle's parts will); `-v` logs
one line per request."""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
from pathlib import Path

import aiohttp

import mirror
from fixtures.generate import LayoutWriter, image, make_big_image
from mirror.archive.bundle import create_bundle
from mirror.layout import Layout
from tests.support.registry import Registry
from tests.support.serving import serving, start_serve
from tests.support.tools import FIXTURES, amirror, fixture_digest

MiB = 1024 * 1024
ACCEPT = "application/vnd.oci.image.manifest.v1+json"


async def _whole(http: aiohttp.ClientSession, name: str, tag: str) -> None:
    """The tag's manifest and every blob it names are there (HEAD)."""
    answer = await http.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": ACCEPT})
    assert answer.status == 200, (tag, answer.status)
    manifest = json.loads(await answer.read())
    for blob in [manifest["config"], *manifest["layers"]]:
        head = await http.head(f"/v2/{name}/blobs/{blob['digest']}")
        assert head.status == 200, (tag, blob["digest"])
        assert head.headers["Content-Length"] == str(blob["size"])


async def test_a_layout_a_sync_is_writing_is_served_consistently(
    registry: Registry, tmp_path: Path
) -> None:
    tags = [f"v{i}" for i in range(4)]
    for i, tag in enumerate(tags):
        make_big_image(tmp_path / f"src{i}", "v1", 3, 2 * MiB, seed=60 + i)
        await mirror.copy(
            f"oci:{tmp_path / f'src{i}'}:v1", f"docker://{registry.host}/live/a:{tag}"
        )
    live = tmp_path / "live"
    await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", f"oci:{live}:seed/app:v0")
    config = tmp_path / "sync.toml"
    config.write_text(f'[[jobs]]\nsource = "{registry.host}/live/a"\ndestination = "oci:{live}"\n')
    seen: set[str] = set()
    with serving(f"oci:{live}") as served:
        async with aiohttp.ClientSession(served.url) as http:
            sync = asyncio.create_task(amirror("sync", str(config)))
            while not sync.done() or len(seen) < len(tags):
                listed = await http.get("/v2/live/a/tags/list")
                if listed.status == 200:
                    for tag in (await listed.json())["tags"]:
                        await _whole(http, "live/a", tag)
                        seen.add(tag)
                else:
                    assert (await listed.json())["errors"][0]["code"] == "NAME_UNKNOWN"
                if sync.done() and len(seen) < len(tags):
                    break
                await asyncio.sleep(0.02)
            assert (await sync).returncode == 0
        assert seen == set(tags)
        pulled = await mirror.inspect(f"docker://{served.host}/live/a:v3")
        assert pulled.digest == (await mirror.inspect(f"docker://{registry.host}/live/a:v3")).digest


def _tar(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, str(path.relative_to(folder)), recursive=False)
    return out


async def test_archives_side_by_side_serve_as_one(tmp_path: Path) -> None:
    """The image's largest layer is only in the second archive (as a bundle split in parts
    keeps it): pulled whole from both, refused from the first alone; `-v` logs each request."""
    first = tmp_path / "first"
    shutil.copytree(FIXTURES / "oci-single", first)
    async with await Layout.open(first) as layout:
        manifest = await layout.manifest_get("v1")
    layer = max(manifest.layers, key=lambda d: d.size)  # type: ignore[union-attr]
    second = tmp_path / "second"
    (second / "blobs" / "sha256").mkdir(parents=True)
    shutil.move(layout.blob_path(layer.digest), second / "blobs" / "sha256" / layer.digest.encoded)
    shutil.copy(first / "oci-layout", second / "oci-layout")
    (second / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')
    one, two = _tar(first, tmp_path / "one.tar"), _tar(second, tmp_path / "two.tar")
    served = start_serve("-v", "--repository", "parts", f"oci-archive:{one}", f"oci-archive:{two}")
    try:
        pulled = await mirror.copy(f"docker://{served.host}/parts:v1", f"oci:{tmp_path / 'out'}:v1")
        assert pulled.digest == fixture_digest("oci-single")
    finally:
        code, log = served.stop()
    assert code == 0, log
    assert f"GET /v2/parts/blobs/{layer.digest} 200" in log
    assert "GET /v2/parts/manifests/v1 200" in log
    with serving("--repository", "parts", f"oci-archive:{one}") as alone:
        missing = await amirror(
            "copy", f"docker://{alone.host}/parts:v1", f"oci:{tmp_path / 'x'}:v1"
        )
        assert missing.returncode == 1


async def test_a_delta_bundle_is_served_whole_beside_the_bundle_it_builds_on(
    registry: Registry, tmp_path: Path
) -> None:
    def build(name: str, files: dict[str, bytes]) -> Path:
        root = tmp_path / name
        writer = LayoutWriter(root)
        base = {"bin/app": b"the unchanging base layer\n" * 1000}
        writer.name(image(writer, [base, files]), "v")
        writer.close()
        return root

    await mirror.copy(f"oci:{build('one', {'v': b'1'})}:v", f"docker://{registry.host}/dl/app:1")
    week1 = tmp_path / "week1.tar"
    await create_bundle(week1, [f"{registry.host}/dl/app:1"])
    await mirror.copy(f"oci:{build('two', {'v': b'2'})}:v", f"docker://{registry.host}/dl/app:2")
    week2 = tmp_path / "week2.tar"
    record, _ = await create_bundle(week2, [f"{registry.host}/dl/app:2"], since=week1)
    assert record.omitted  # the base layer stays behind
    expected = (await mirror.inspect(f"docker://{registry.host}/dl/app:2")).digest
    with serving(str(week2)) as alone:
        missing = await amirror(
            "copy", f"docker://{alone.host}/dl/app:2", f"oci:{tmp_path / 'a'}:x"
        )
        assert missing.returncode == 1
    with serving(str(week2), str(week1)) as both:
        pulled = await mirror.copy(f"docker://{both.host}/dl/app:2", f"oci:{tmp_path / 'b'}:x")
        assert pulled.digest == expected
        tags = await mirror.list_tags(f"docker://{both.host}/dl/app")
        assert sorted(tags) == ["1", "2"]
