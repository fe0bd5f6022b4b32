"""Every pair of endpoints, for every kind of image: digests preserved, skopeo reads the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mirror
from fixtures.generate import make_big_image
from mirror.engine import UNASKED_UPLOAD_LIMIT, CopyRun, copy_image
from mirror.errors import RegistryError
from mirror.layout import Layout, verify
from mirror.oci.digest import Digest
from mirror.oci.model import Manifest
from mirror.oci.reference import RegistryReference, parse_reference
from mirror.registry import HostSettings, RegistryClient, RegistryOptions
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy
from tests.support.tools import FIXTURES, fixture_digest, skopeo
from tests.support.tools import mirror as run_mirror

#: every byte streams through mirror: no blob locations remembered by other tests' runs
STREAMED = RegistryOptions(blob_cache=False)

KINDS = ("oci-single", "docker-v2", "multi-arch", "artifact")
#: distinct config and layer blobs of each fixture image (what a fresh copy moves)
BLOBS = {"oci-single": 3, "docker-v2": 2, "multi-arch": 5, "artifact": 2}
PAIRS = ("registry->layout", "layout->registry", "registry->registry", "layout->layout")


async def _seed(registry: Registry, kind: str) -> str:
    """Put the fixture into the source registry (skopeo where it can, mirror for docker-v2)."""
    if kind == "docker-v2":
        # skopeo 1.9 cannot read a Docker v2 manifest out of an OCI layout
        target = f"docker://{registry.host}/src/{kind}:v1"
        await mirror.copy(f"oci:{FIXTURES / kind}:v1", target)
        return target
    return "docker://" + registry.push_fixture(kind, f"src/{kind}")


def _skopeo_digest(ref: str) -> str:
    raw = skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout.encode()
    return str(Digest.of(raw))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pair", PAIRS)
async def test_copy_every_pair(
    pair: str, kind: str, registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    expected = fixture_digest(kind)
    source_side, dest_side = pair.split("->")
    if source_side == "registry":
        source = await _seed(registry, kind)
    else:
        source = f"oci:{FIXTURES / kind}:v1"
    if dest_side == "registry":
        # registry->registry goes to another host, so every byte streams through mirror
        target = second_registry if source_side == "registry" else registry
        destination = f"docker://{target.host}/dst/{kind}-{source_side}:copied"
    else:
        destination = f"oci:{tmp_path / 'out'}:copied"

    result = await mirror.copy(source, destination, options=STREAMED)

    assert result.digest == expected
    assert result.blobs_copied == BLOBS[kind]
    if dest_side == "registry":
        assert _skopeo_digest(destination) == expected
        again = await mirror.inspect(destination)
        assert again.digest == expected
    else:
        layout_dir = tmp_path / "out"
        async with await Layout.open(layout_dir) as layout:
            assert (await layout.resolve("copied")).digest == expected
            assert await verify(layout, strict=True) == []
        if kind != "docker-v2":  # skopeo 1.9 lists only OCI media types in a layout
            assert _skopeo_digest(f"oci:{layout_dir}:copied") == expected


async def test_second_copy_transfers_no_blobs(registry: Registry) -> None:
    source = f"oci:{FIXTURES / 'multi-arch'}:v1"
    first = await mirror.copy(source, f"docker://{registry.host}/again/app:v1", options=STREAMED)
    assert first.blobs_copied == 5
    same_tag = await mirror.copy(source, f"docker://{registry.host}/again/app:v1", options=STREAMED)
    assert same_tag.up_to_date
    assert (same_tag.blobs_copied, same_tag.bytes_copied, same_tag.manifests_written) == (0, 0, 0)
    other_tag = await mirror.copy(
        source, f"docker://{registry.host}/again/app:v2", options=STREAMED
    )
    assert (other_tag.blobs_copied, other_tag.blobs_skipped) == (0, 5)


async def test_copy_within_a_registry_mounts_blobs(registry: Registry) -> None:
    source = "docker://" + registry.push_fixture("oci-single", "mount/src")
    result = await mirror.copy(source, f"docker://{registry.host}/mount/dst:v1")
    assert (result.blobs_mounted, result.blobs_copied, result.bytes_copied) == (3, 0, 0)
    assert _skopeo_digest(f"docker://{registry.host}/mount/dst:v1") == fixture_digest("oci-single")


async def test_one_platform_is_copied_alone_and_several_make_a_new_index(
    registry: Registry, tmp_path: Path
) -> None:
    source = f"oci:{FIXTURES / 'multi-arch'}:v1"
    async with await Layout.open(FIXTURES / "multi-arch") as layout:
        index = await layout.manifest_get("v1")
    assert isinstance(index, mirror.Index)
    arm = index.find(mirror.Platform.parse("linux/arm64"))
    assert arm is not None
    one = await mirror.copy(
        source, f"docker://{registry.host}/plat/one:v1", platforms=["linux/arm64"], options=STREAMED
    )
    assert one.digest == arm.digest
    assert one.blobs_copied == 3
    both = await mirror.copy(
        source, f"oci:{tmp_path / 'l'}:both", platforms=["linux/arm64", "linux/amd64"]
    )
    assert both.digest_changed
    assert both.digest != index.digest
    async with await Layout.open(tmp_path / "l") as written:
        assert await verify(written, strict=True) == []  # the new index mirror wrote
    result = run_mirror("--json", "inspect", f"oci:{tmp_path / 'l'}:both")
    platforms = [p["platform"] for p in json.loads(result.stdout)["platforms"]]
    assert platforms == ["linux/arm64/v8", "linux/amd64"]
    with pytest.raises(mirror.ManifestNotFound, match="linux/s390x"):
        await mirror.copy(source, f"oci:{tmp_path / 'l'}:x", platforms=["linux/s390x"])


async def test_copy_to_a_read_only_registry_fails_with_a_typed_error(
    readonly_registry: Registry,
) -> None:
    with pytest.raises(RegistryError) as info:
        await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{readonly_registry.host}/ro/app:v1"
        )
    assert info.value.status in (405, 503)
    cli = run_mirror(
        "copy", f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{readonly_registry.host}/ro/app:v1"
    )
    assert cli.returncode == 1
    assert cli.stderr.count("\n") == 1


async def test_into_a_repository_seen_empty_only_large_blobs_are_asked_first(
    registry: Registry, counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    counting, host = counting_proxy
    make_big_image(tmp_path / "img", "v1", 1, UNASKED_UPLOAD_LIMIT + 1)
    async with (
        await Layout.open(tmp_path / "img") as src,
        RegistryClient(RegistryOptions(defaults=HostSettings(plain_http=True))) as client,
    ):
        ref = parse_reference(f"docker://{host}/fresh/app")
        assert isinstance(ref, RegistryReference)
        dst = client.repository(ref)
        result = await copy_image(src, "v1", dst, "v1", run=CopyRun(fresh_destination=True))
        manifest = await src.manifest_get("v1")
    assert isinstance(manifest, Manifest)
    big = manifest.layers[0]
    heads = [p for m, p in counting.seen if m == "HEAD" and "/blobs/" in p]
    assert heads == [f"/v2/fresh/app/blobs/{big.digest}"]  # the small config is not asked
    assert result.blobs_copied == 2
    assert _skopeo_digest(f"docker://{registry.host}/fresh/app:v1") == result.digest


async def test_a_chunked_registry_copy_reports_the_bytes_it_moved(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """Issue 13: each PATCH read past its slice of the source, so the count (and the bytes
    fetched) exceeded the image; a chunked stream now reads every byte once."""
    source_dir = tmp_path / "src"
    make_big_image(source_dir, "big", layers=1, layer_size=5 * 1024 * 1024 + 12345, seed=13)
    src = f"docker://{registry.host}/chunked/src:v1"
    await mirror.copy(f"oci:{source_dir}:big", src)
    options = RegistryOptions(
        use_docker_config=False,
        chunk_size=1024 * 1024,
        chunked_upload_threshold=2 * 1024 * 1024,
        blob_cache=False,
    )
    dst = f"docker://{second_registry.host}/chunked/dst:v1"
    result = await mirror.copy(src, dst, options=options)
    async with await Layout.open(source_dir) as layout:
        manifest = await layout.manifest_get("big")
    assert isinstance(manifest, Manifest)
    assert result.bytes_copied == sum(b.size for b in manifest.blobs())
    assert _skopeo_digest(dst) == str(manifest.digest)
