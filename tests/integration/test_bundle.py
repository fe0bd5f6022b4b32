"""Air-gap bundles: registry -> bundle -> empty registry, deltas, damage, skopeo, zstd."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

import mirror
from fixtures.generate import LayoutWriter, image
from mirror.archive.bundle import create_bundle, list_bundle, push_bundle, verify_bundle
from mirror.errors import LayoutError, NotFound
from mirror.layout import Layout
from tests.support.layouts import archive_problems
from tests.support.registry import Registry
from tests.support.tools import FIXTURES, amirror, fixture_digest, skopeo


async def _seed(registry: Registry, repo: str) -> list[str]:
    """oci-single and multi-arch under `repo`/…; their registry names."""
    names = []
    for kind in ("oci-single", "multi-arch"):
        registry.push_fixture(kind, f"{repo}/{kind}")
        names.append(f"{registry.host}/{repo}/{kind}:v1")
    return names


async def _catalog(registry: Registry) -> list[str]:
    return await mirror.list_repositories(registry.host)


async def test_registry_to_bundle_to_empty_registry(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    names = await _seed(registry, "air")
    out = tmp_path / "one.tar.zst"
    record, _ = await create_bundle(out, names)
    assert [i.name for i in (await list_bundle(out)).images] == names
    assert await verify_bundle(out) == []
    assert await archive_problems(out, tmp_path / "check") == []
    pushed = await push_bundle(out, f"{second_registry.host}/restored")
    for name, pushed_image in zip(names, pushed, strict=True):
        original = await mirror.inspect(f"docker://{name}")
        copy = await mirror.inspect(pushed_image.target)
        assert copy.digest == original.digest
        assert pushed_image.target.startswith(f"docker://{second_registry.host}/restored/air/")
    fixture_blobs = {
        f"sha256:{p.name}"
        for kind in ("oci-single", "multi-arch")
        for p in (FIXTURES / kind / "blobs" / "sha256").iterdir()
    }
    assert set(record.blobs) == fixture_blobs
    cli = await amirror("--json", "bundle", "ls", str(out))
    assert len(json.loads(cli.stdout)["images"]) == 2


async def test_delta_bundle_carries_only_what_changed(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    def build(files: dict[str, bytes], created: str) -> Path:
        root = tmp_path / f"src-{created[:10]}"
        writer = LayoutWriter(root)
        base = {"bin/app": b"the unchanging base layer\n" * 100}
        writer.name(image(writer, [base, files], created=created), "v")
        writer.close()
        return root

    first = build({"etc/version": b"1\n"}, "2024-02-01T00:00:00Z")
    await mirror.copy(f"oci:{first}:v", f"docker://{registry.host}/delta/app:v")
    names = [f"{registry.host}/delta/app:v", *await _seed(registry, "delta-other")]
    full = tmp_path / "full.tar"
    await create_bundle(full, names)
    await push_bundle(full, second_registry.host)

    second = build({"etc/version": b"2\n"}, "2024-02-02T00:00:00Z")
    await mirror.copy(f"oci:{second}:v", f"docker://{registry.host}/delta/app:v")
    delta = tmp_path / "delta.tar"
    record, _ = await create_bundle(delta, names, since=full)
    async with await Layout.open(second) as layout:
        manifest = await layout.manifest_get("v")
    assert isinstance(manifest, mirror.Manifest)
    new_layer, new_config = str(manifest.layers[1].digest), str(manifest.config.digest)
    with tarfile.open(delta) as tar:
        carried = {"sha256:" + m.name.rsplit("/", 1)[1] for m in tar if m.name.startswith("blobs/")}
    # the manifests of every image (known from the sources: the app's, oci-single's, and
    # multi-arch's index and its two platform manifests), the changed layer, the new config
    async with await Layout.open(FIXTURES / "multi-arch") as arch:
        index = await arch.manifest_get("v1")
    manifests = {
        str(manifest.digest),
        fixture_digest("oci-single"),
        str(index.digest),
        *(str(child.digest) for child in index.children),
    }
    assert carried == manifests | {new_layer, new_config}
    assert str(manifest.layers[0].digest) in record.omitted

    # on top of the first bundle's push the delta goes through; on an empty registry it
    # names what is missing and writes nothing
    await push_bundle(delta, second_registry.host)
    assert (await mirror.inspect(f"docker://{second_registry.host}/delta/app:v")).digest == str(
        manifest.digest
    )
    before = await mirror.list_repositories(registry.host)
    with pytest.raises(NotFound, match="leaves out"):
        await push_bundle(delta, f"{registry.host}/never")
    assert await mirror.list_repositories(registry.host) == before


def _flip_inside_a_blob(bundle: Path) -> None:
    with tarfile.open(bundle) as tar:
        member = max(
            (m for m in tar.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size
        )
        offset = member.offset_data + member.size // 2
    data = bytearray(bundle.read_bytes())
    data[offset] ^= 0x01
    bundle.write_bytes(bytes(data))


async def test_damage_is_found_before_anything_is_pushed(
    registry: Registry, tmp_path: Path
) -> None:
    names = await _seed(registry, "damage")
    bundle = tmp_path / "b.tar"
    await create_bundle(bundle, names)
    _flip_inside_a_blob(bundle)
    problems = await verify_bundle(bundle)
    assert "corrupt" in [p.kind for p in problems]
    cli = await amirror("bundle", "verify", str(bundle))
    assert cli.returncode == 1
    before = await _catalog(registry)
    with pytest.raises(LayoutError, match="nothing pushed"):
        await push_bundle(bundle, f"{registry.host}/flipped")
    pushed = await amirror("bundle", "push", str(bundle), f"{registry.host}/flipped")
    assert (pushed.returncode, pushed.stderr.count("\n")) == (1, 1)
    assert await _catalog(registry) == before

    truncated = tmp_path / "t.tar.zst"
    await create_bundle(truncated, names)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    for command in ("verify", "push"):
        args = [str(truncated)] + ([f"{registry.host}/truncated"] if command == "push" else [])
        result = await amirror("bundle", command, *args)
        assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
        assert "truncated" in result.stderr
    assert await _catalog(registry) == before


async def test_single_image_archives_interoperate_with_skopeo(tmp_path: Path) -> None:
    ours = tmp_path / "ours.tar"
    result = await mirror.copy(f"oci:{FIXTURES / 'multi-arch'}:v1", f"oci-archive:{ours}:app")
    raw = skopeo("inspect", "--raw", f"oci-archive:{ours}:app").stdout.encode()
    assert str(mirror.Digest.of(raw)) == result.digest
    theirs = tmp_path / "theirs.tar"
    skopeo("copy", f"oci:{FIXTURES / 'oci-single'}:v1", f"oci-archive:{theirs}:x")
    read = await mirror.inspect(f"oci-archive:{theirs}:x")
    async with await Layout.open(FIXTURES / "oci-single") as layout:
        assert read.digest == (await layout.resolve("v1")).digest
    back = await mirror.copy(f"oci-archive:{theirs}:x", f"oci:{tmp_path / 'l'}:x")
    assert back.digest == read.digest


async def test_recompressed_layers_hold_the_same_tar_bytes(
    registry: Registry, tmp_path: Path
) -> None:
    names = await _seed(registry, "zstd")
    bundle = tmp_path / "z.tar"
    record, _ = await create_bundle(bundle, names, recompress="zstd")
    assert record.recompressed
    assert await verify_bundle(bundle) == []
    assert await archive_problems(bundle, tmp_path / "check") == []  # the new manifests too
    changed = {c["from"]: c["to"] for c in record.recompressed}
    blobs = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(blobs, filter="data")
    layers = 0
    for old, new in changed.items():
        source = FIXTURES / "oci-single" / "blobs" / "sha256" / old[7:]
        if not source.exists():
            source = FIXTURES / "multi-arch" / "blobs" / "sha256" / old[7:]
        packed = (blobs / "blobs" / "sha256" / new[7:]).read_bytes()
        if packed[:4] == b"\x28\xb5\x2f\xfd":  # a layer (the others are new manifests)
            layers += 1
            assert zstandard.ZstdDecompressor().decompressobj().decompress(packed) == (
                gzip.decompress(source.read_bytes())
            )
    assert layers == 4  # oci-single: base + motd; multi-arch: the same base + 2 arch layers
    pushed = await push_bundle(bundle, f"{registry.host}/zstd-restored")
    info = await mirror.inspect(pushed[0].target)
    assert all(layer["mediaType"].endswith("+zstd") for layer in info.layers)


async def test_a_sync_config_chooses_the_bundle_images(registry: Registry, tmp_path: Path) -> None:
    await _seed(registry, "chosen")
    config = tmp_path / "bundle.toml"
    config.write_text(
        f'[[jobs]]\nregistry = "{registry.host}"\ninclude = ["chosen/*"]\n'
        '[jobs.tags]\ninclude = ["^v1$"]\n'
    )
    out = tmp_path / "chosen.tar"
    cli = await amirror("--json", "bundle", "create", str(out), "--config", str(config))
    assert cli.returncode == 0, cli.stderr
    names = sorted(i.name for i in (await list_bundle(out)).images)
    assert names == [
        f"{registry.host}/chosen/multi-arch:v1",
        f"{registry.host}/chosen/oci-single:v1",
    ]
    both = await amirror("bundle", "create", str(out), "x.example.com/a:b", "--config", str(config))
    assert both.returncode == 2


async def test_an_image_two_jobs_select_is_bundled_once(registry: Registry, tmp_path: Path) -> None:
    await _seed(registry, "twice")
    config = tmp_path / "bundle.toml"
    config.write_text(
        f'[[jobs]]\nregistry = "{registry.host}"\ninclude = ["twice/*"]\n'
        '[jobs.tags]\ninclude = ["^v1$"]\n'
        f'[[jobs]]\nsource = "{registry.host}/twice/oci-single"\n'
    )
    out = tmp_path / "twice.tar"
    cli = await amirror("bundle", "create", str(out), "--config", str(config))
    assert cli.returncode == 0, cli.stderr
    names = [i.name for i in (await list_bundle(out)).images]
    assert sorted(names) == [
        f"{registry.host}/twice/multi-arch:v1",
        f"{registry.host}/twice/oci-single:v1",
    ]
