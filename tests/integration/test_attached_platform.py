"""What is attached to an image is copied without the image's platform filter (issue 24,
observation 4): a cosign signature has no platform, so `--platform` with `--referrers` must
copy the chosen platform and the signature, by copy and by `bundle create`."""

from __future__ import annotations

from pathlib import Path

import mirror
from mirror.layout import Layout
from mirror.oci.model import fallback_tag
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions
from tests.support.artifacts import cosign_signature
from tests.support.registry import Registry
from tests.support.tools import amirror


async def _signed_index(registry: Registry, name: str) -> tuple[str, str]:
    """The multi-arch fixture pushed as `name:v1` and signed as cosign signs it (the index's
    digest tag); its digest and the signature tag."""
    registry.push_fixture("multi-arch", name)
    async with RegistryClient(RegistryOptions()) as client:
        repo = client.repository(RegistryReference(registry.host, name), writing=True)
        index = await repo.manifest_get("v1")
        await cosign_signature(repo, index, b'"signed"')
    return str(index.digest), f"{fallback_tag(index.digest)}.sig"


async def test_copy_with_platform_and_referrers_brings_the_signature(
    registry: Registry, tmp_path: Path
) -> None:
    digest, sig = await _signed_index(registry, "attached/copy")
    out = tmp_path / "out"
    done = await amirror(
        "copy",
        "--platform",
        "linux/amd64",
        "--referrers",
        f"docker://{registry.host}/attached/copy:v1",
        f"oci:{out}:v1",
    )
    assert done.returncode == 0, done.stderr
    async with await Layout.open(out) as layout:
        names = {image.name for image in await layout.images()}
        assert sig in names  # the signature of the index came along
        chosen = await layout.manifest_get("v1")
        assert str(chosen.digest) != digest  # the amd64 image alone, under the tag


async def test_library_copy_with_platform_and_referrers_to_a_registry(
    registry: Registry,
) -> None:
    _, sig = await _signed_index(registry, "attached/lib")
    result = await mirror.copy(
        f"docker://{registry.host}/attached/lib:v1",
        f"docker://{registry.host}/attached/lib-copy:v1",
        platforms=["linux/arm64"],
        referrers=True,
    )
    assert result.attached == [sig]
    tags = await mirror.list_tags(f"docker://{registry.host}/attached/lib-copy")
    assert sig in tags


async def test_bundle_create_with_platform_and_referrers_carries_the_signature(
    registry: Registry, tmp_path: Path
) -> None:
    _, sig = await _signed_index(registry, "attached/bundle")
    bundle = tmp_path / "b.tar"
    made = await amirror(
        "bundle",
        "create",
        "--platform",
        "linux/amd64",
        "--referrers",
        str(bundle),
        f"{registry.host}/attached/bundle:v1",
    )
    assert made.returncode == 0, made.stderr
    pushed = await amirror("bundle", "push", str(bundle), f"{registry.host}/carried")
    assert pushed.returncode == 0, pushed.stderr
    tags = await mirror.list_tags(f"docker://{registry.host}/carried/attached/bundle")
    assert sig in tags
