"""Redirects to storage never carry credentials; hostile or broken registries change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

import mirror
from mirror.auth import Credentials
from mirror.errors import DigestMismatch, ManifestInvalid
from mirror.oci import mediatypes as mt
from mirror.registry import HostSettings, RegistryOptions
from tests.support.hostile import HostileRegistry, image
from tests.support.registry import Registry
from tests.support.scripted import ScriptedProxy, StorageServer, address, serve, serving
from tests.support.tools import FIXTURES, amirror
from tests.support.tools import mirror as run_mirror


@pytest.fixture
async def seeded(registry: Registry) -> str:
    """The oci-single fixture in the real registry, as faults/app:v1."""
    registry.push_fixture("oci-single", "faults/app")
    return "faults/app:v1"


async def _proxy(proxy: ScriptedProxy) -> AsyncIterator[str]:
    runner = await serve(proxy.app())
    try:
        yield address(runner)
    finally:
        await runner.cleanup()


async def test_blob_redirect_to_another_host_drops_authorization(
    registry: Registry, seeded: str, tmp_path: Path
) -> None:
    storage = StorageServer(registry.host)
    storage_runner = await serve(storage.app(), host="127.0.0.2")
    proxy = ScriptedProxy(
        registry.host, basic_user=("bob", "pw"), redirect_blobs_to=address(storage_runner)
    )
    try:
        async for host in _proxy(proxy):
            opts = RegistryOptions(
                defaults=HostSettings(credentials=Credentials("bob", "pw")), use_docker_config=False
            )
            result = await mirror.copy(
                f"docker://{host}/{seeded}", f"oci:{tmp_path / 'l'}:v1", options=opts
            )
            assert result.blobs_copied == 3
    finally:
        await storage_runner.cleanup()
    assert len(storage.seen) == 3
    assert all("Authorization" not in headers for headers in storage.seen)
    assert any(a.startswith("Basic ") for a in proxy.authorizations)


async def test_wrong_bytes_for_a_digest_leave_the_destination_unchanged(
    registry: Registry, seeded: str, tmp_path: Path
) -> None:
    out = tmp_path / "l"
    await mirror.copy(f"oci:{FIXTURES / 'docker-v2'}:v1", f"oci:{out}:before")
    index_before = (out / "index.json").read_bytes()
    blobs_before = sorted(p.name for p in (out / "blobs" / "sha256").iterdir())
    async for host in _proxy(ScriptedProxy(registry.host, flip_blob_byte=True)):
        with pytest.raises(DigestMismatch):
            await mirror.copy(f"docker://{host}/{seeded}", f"oci:{out}:after")
        cli = await amirror("copy", f"docker://{host}/{seeded}", f"oci:{out}:after")
        assert cli.returncode == 1
        assert cli.stderr.count("\n") == 1
        assert "hashes to" in cli.stderr
    assert (out / "index.json").read_bytes() == index_before
    assert sorted(p.name for p in (out / "blobs" / "sha256").iterdir()) == blobs_before
    assert list((out / ".mirror" / "tmp").iterdir()) == []


async def test_a_lying_content_type_is_refused(
    registry: Registry, seeded: str, tmp_path: Path
) -> None:
    proxy = ScriptedProxy(registry.host, manifest_content_type=mt.DOCKER_MANIFEST_LIST)
    async for host in _proxy(proxy):
        with pytest.raises(ManifestInvalid, match="served as"):
            await mirror.copy(f"docker://{host}/{seeded}", f"oci:{tmp_path / 'l'}:v1")
        cli = await amirror("inspect", f"{host}/{seeded}")
        assert cli.returncode == 1
        assert cli.stderr.count("\n") == 1
    assert not (tmp_path / "l" / "blobs" / "sha256").exists() or not any(
        (tmp_path / "l" / "blobs" / "sha256").iterdir()
    )


def test_missing_tag_and_unknown_host_are_one_line(registry: Registry, tmp_path: Path) -> None:
    missing = run_mirror("copy", f"docker://{registry.host}/nothing/here:v9", f"oci:{tmp_path}/l")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1
    assert "not found" in missing.stderr
    assert not (tmp_path / "l").exists()  # nothing was written, not even a directory
    unknown = run_mirror("inspect", "docker://registry.nonexistent.invalid/app:v1")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1
    assert "registry.nonexistent.invalid" in unknown.stderr
    bad = run_mirror("copy", "docker://Bad_Host/app", f"oci:{tmp_path / 'x'}")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1


async def test_relative_upload_locations_are_followed(registry: Registry) -> None:
    proxy = ScriptedProxy(registry.host, relative_locations=True)
    async for host in _proxy(proxy):
        result = await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{host}/relative/app:v1"
        )
        assert result.blobs_copied == 3
    uploads = [loc for loc in proxy.locations_sent if "/blobs/uploads/" in loc]
    assert uploads
    assert all(loc.startswith("/v2/relative/app/blobs/uploads/") for loc in uploads)
    assert any("_state=" in loc for loc in uploads)
    again = await mirror.inspect(f"docker://{registry.host}/relative/app:v1")
    assert again.digest == result.digest


@pytest.mark.parametrize(
    ("change", "error", "says"),
    [
        ({"manifest_body": b" " * (4 * 1024 * 1024 + 1)}, ManifestInvalid, "4 MiB"),
        ({"manifest_digest_header": "sha256:" + "0" * 64}, DigestMismatch, "hashes to"),
        ({"manifest_digest_header": "sha256:../x"}, ManifestInvalid, "Docker-Content-Digest"),
    ],
)
async def test_hostile_manifest_replies_are_refused(
    registry: Registry,
    seeded: str,
    tmp_path: Path,
    change: dict[str, object],
    error: type[Exception],
    says: str,
) -> None:
    proxy = ScriptedProxy(registry.host, **change)  # type: ignore[arg-type]
    async for host in _proxy(proxy):
        with pytest.raises(error, match=says):
            await mirror.copy(f"docker://{host}/{seeded}", f"oci:{tmp_path / 'l'}:v1")


async def test_a_manifest_sent_in_small_pieces_is_read_whole(registry: Registry) -> None:
    registry.push_fixture("multi-arch", "trickle/app")
    proxy = ScriptedProxy(registry.host, trickle_manifests=True)
    async for host in _proxy(proxy):
        info = await mirror.inspect(f"docker://{host}/trickle/app:v1")
    assert len(info.platforms) == 2


async def test_chunked_upload_honours_the_minimum_chunk_length(
    registry: Registry, tmp_path: Path
) -> None:
    from fixtures.generate import make_big_image

    mib = 1024 * 1024
    make_big_image(tmp_path / "img", "img", 1, 7 * mib, seed=3)
    proxy = ScriptedProxy(registry.host, relative_locations=True, chunk_min_length=3 * mib)
    options = RegistryOptions(
        chunked_upload_threshold=mib, chunk_size=mib, state_dir=tmp_path / "state"
    )
    async for host in _proxy(proxy):
        await mirror.copy(
            f"oci:{tmp_path / 'img'}:img", f"docker://{host}/minchunk/app:v1", options=options
        )
    assert proxy.patch_sizes == [3 * mib, 3 * mib, mib]


async def test_a_resumed_upload_keeps_the_minimum_chunk_length(
    registry: Registry, tmp_path: Path
) -> None:
    """The registry's least PATCH is saved with the session: an upload resumed by a later
    run still sends no smaller one (it sent chunks of 1 MiB upward, which such a registry
    refuses)."""
    from fixtures.generate import make_big_image
    from mirror.layout import Layout
    from mirror.oci.model import Manifest
    from mirror.registry.sessions import UploadSession, UploadSessions

    mib = 1024 * 1024
    make_big_image(tmp_path / "img", "img", 1, 20 * mib, seed=4)
    async with await Layout.open(tmp_path / "img") as layout:
        manifest = await layout.manifest_get("img")
        assert isinstance(manifest, Manifest)
        layer = manifest.layers[0]
        blob = layout.blob_path(layer.digest).read_bytes()
    proxy = ScriptedProxy(registry.host, relative_locations=True, chunk_min_length=6 * mib)
    options = RegistryOptions(
        chunked_upload_threshold=mib, chunk_size=mib, state_dir=tmp_path / "state"
    )
    async for host in _proxy(proxy):
        async with aiohttp.ClientSession() as http:  # an earlier run: one PATCH, then killed
            async with http.post(f"http://{host}/v2/minresume/app/blobs/uploads/") as started:
                location = started.headers["Location"]
            async with http.patch(f"http://{host}{location}", data=blob[: 6 * mib]) as sent:
                assert sent.status == 202
                location = sent.headers["Location"]
        UploadSessions(options.upload_state_dir()).save(
            UploadSession(host, "minresume/app", str(layer.digest), location, 6 * mib, 6 * mib)
        )
        proxy.patch_sizes.clear()
        await mirror.copy(
            f"oci:{tmp_path / 'img'}:img", f"docker://{host}/minresume/app:v1", options=options
        )
    assert proxy.patch_sizes[0] == 6 * mib  # resumed, not started afresh
    assert all(size >= 6 * mib for size in proxy.patch_sizes[:-1]), proxy.patch_sizes
    assert sum(proxy.patch_sizes) == len(blob) - 6 * mib


async def test_a_connection_cut_after_the_last_byte_needs_no_range(tmp_path: Path) -> None:
    """Issue 13: a chunked body cut right after its last byte has every byte: no `Range:
    bytes=SIZE-` (which the registry answers 416), the digest decides."""
    registry = HostileRegistry(cut_after_last_byte=True)
    image(registry, "v1", layer=b"every byte arrived " * 1000)
    async with serving(registry.app()) as host:
        out = tmp_path / "out"
        result = await amirror("copy", f"docker://{host}/app:v1", f"oci:{out}:v1")
        assert result.returncode == 0, result.stderr
        assert registry.ranges == []
        assert run_mirror("layout", "verify", str(out)).returncode == 0
