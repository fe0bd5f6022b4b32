"""`docker-archive:` (issue 15 part 1) against the real skopeo and registry: skopeo reads every
archive mirror writes and mirror reads the archives skopeo writes (one image or many, docker's
legacy and OCI-inside forms); damaged, lying and escaping archives are one clear error with
nothing written."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

import mirror as mirror_api
from mirror.errors import InvalidReference
from tests.support.registry import Registry
from tests.support.tools import FIXTURES, mirror, skopeo

# fixture -> does copying it into a docker archive choose a platform (an index)
IMAGES = {"oci-single": False, "docker-v2": False, "multi-arch": True}


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, _, encoded = digest.partition(":")
    return (layout / "blobs" / algorithm / encoded).read_bytes()


def image_config(layout: Path, ref: str = "v1") -> tuple[str, list[str]]:
    """The config digest and diff_ids of the linux/amd64 image named `ref` in a layout."""
    index = json.loads((layout / "index.json").read_bytes())
    entry = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref
    )
    manifest = json.loads(_blob(layout, entry["digest"]))
    while "manifests" in manifest:
        child = next(
            (
                m
                for m in manifest["manifests"]
                if m.get("platform", {}).get("architecture") == "amd64"
            ),
            manifest["manifests"][0],
        )
        manifest = json.loads(_blob(layout, child["digest"]))
    config = manifest["config"]["digest"]
    return config, json.loads(_blob(layout, config))["rootfs"]["diff_ids"]


def members(path: Path) -> dict[str, bytes]:
    """Every regular member of a tar (small test archives), by name."""
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile()
        }


def write_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    """A tar of `files` (and symbolic links name -> target)."""
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)


def skopeo_archive(registry: Registry, tmp: Path, fixture: str, name: str) -> Path:
    """`skopeo copy` of a committed fixture (from the registry: skopeo's `oci:` source takes
    no Docker manifests) into a docker archive tagged `name`."""
    source = f"docker://{registry.host}/dax/{fixture}:1"
    _ok("copy", f"oci:{FIXTURES / fixture}:v1", source)
    out = tmp / f"{fixture}-{name.replace('/', '_').replace(':', '_')}.tar"
    skopeo("copy", "--src-tls-verify=false", source, f"docker-archive:{out}:{name}")
    return out


def archive_config(archive: Path, position: int = 0) -> tuple[str, list[str]]:
    """The config digest and diff_ids of an image in a docker archive (skopeo rewrites an OCI
    image's config when it makes it a Docker image: the archive's is the one to compare)."""
    found = members(archive)
    entry = json.loads(found["manifest.json"])[position]
    raw = found[entry["Config"]]
    return f"sha256:{hashlib.sha256(raw).hexdigest()}", json.loads(raw)["rootfs"]["diff_ids"]


def _ok(*args: str) -> str:
    result = mirror(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("fixture", sorted(IMAGES))
def test_skopeo_reads_what_mirror_writes(registry: Registry, fixture: str, tmp_path: Path) -> None:
    source = f"docker://{registry.host}/da/{fixture}:1"
    _ok("copy", f"oci:{FIXTURES / fixture}:v1", source)
    out = tmp_path / "out.tar"
    _ok("copy", source, f"docker-archive:{out}")

    listed = json.loads(members(out)["manifest.json"])
    assert [e["RepoTags"] for e in listed] == [[f"{registry.host}/da/{fixture}:1"]]
    inspected = json.loads(skopeo("inspect", f"docker-archive:{out}").stdout)
    assert inspected["Architecture"] == "amd64"
    # --format v2s2: skopeo would rewrite the config to make an OCI image of it
    skopeo("copy", "--format", "v2s2", f"docker-archive:{out}", f"oci:{tmp_path / 'back'}:v1")
    assert image_config(tmp_path / "back") == image_config(FIXTURES / fixture)


@pytest.mark.parametrize("fixture", ["oci-single", "docker-v2"])
def test_mirror_reads_what_skopeo_writes(registry: Registry, fixture: str, tmp_path: Path) -> None:
    archive = skopeo_archive(registry, tmp_path, fixture, "team/app:1.0")
    target = f"docker://{registry.host}/da/back-{fixture}:1"
    said = _ok("--json", "copy", f"docker-archive:{archive}", target)
    assert "keeps no manifest" in json.loads(said)["note"]

    pulled = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--format", "v2s2", target, f"oci:{pulled}:v1")
    assert image_config(pulled) == archive_config(archive)
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", target).stdout)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {layer["mediaType"] for layer in raw["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }

    zstd = f"docker://{registry.host}/da/zstd-{fixture}:1"
    options = ("--format", "oci", "--dest-compress-format", "zstd")
    _ok("copy", *options, f"docker-archive:{archive}", zstd)
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", zstd).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert {layer["mediaType"] for layer in raw["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    }
    _ok("copy", zstd, f"oci:{tmp_path / 'z'}:v1")  # every byte verified on the way back
    assert image_config(tmp_path / "z") == archive_config(archive)


def _merged(tmp_path: Path, archives: list[Path]) -> Path:
    """One archive holding the images of several, as `docker save A B` writes it."""
    files: dict[str, bytes] = {}
    listed: list[Any] = []
    for archive in archives:
        found = members(archive)
        listed += json.loads(found.pop("manifest.json"))
        found.pop("repositories", None)
        files.update(found)
    files["manifest.json"] = json.dumps(listed).encode()
    out = tmp_path / "merged.tar"
    write_tar(out, files)
    return out


def test_a_multi_image_archive_both_ways(registry: Registry, tmp_path: Path) -> None:
    merged = _merged(
        tmp_path,
        [
            skopeo_archive(registry, tmp_path, "oci-single", "team/a:1.0"),
            skopeo_archive(registry, tmp_path, "docker-v2", "team/b:2.0"),
        ],
    )
    listed = _ok("--json", "tags", f"docker-archive:{merged}")
    # the RepoTags as skopeo wrote them, read from manifest.json (no layer is touched)
    assert json.loads(listed) == ["docker.io/team/a:1.0", "docker.io/team/b:2.0"]
    _ok("copy", f"docker-archive:{merged}:@1", f"oci:{tmp_path / 'one'}:v1")
    assert image_config(tmp_path / "one") == archive_config(merged, 1)
    _ok("copy", f"docker-archive:{merged}:team/a:1.0", f"oci:{tmp_path / 'two'}:v1")
    assert image_config(tmp_path / "two") == archive_config(merged, 0)
    unsaid = mirror("copy", f"docker-archive:{merged}", f"oci:{tmp_path / 'three'}:v1")
    assert unsaid.returncode != 0
    assert "holds 2 images" in unsaid.stderr
    assert len(unsaid.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "three").exists()

    # mirror writes several images into one archive; skopeo reads each
    for fixture in IMAGES:
        _ok("copy", f"oci:{FIXTURES / fixture}:v1", f"docker://{registry.host}/dam/{fixture}:1")
    out = tmp_path / "several.tar"
    images = [f"{registry.host}/dam/{fixture}:1" for fixture in IMAGES]
    _ok("bundle", "create", "--format", "docker-archive", str(out), *images)
    for position, fixture in enumerate(IMAGES):
        back = tmp_path / f"back-{fixture}"
        skopeo("copy", "--format", "v2s2", f"docker-archive:{out}:@{position}", f"oci:{back}:v1")
        assert image_config(back) == image_config(FIXTURES / fixture)
        skopeo("inspect", f"docker-archive:{out}:{images[position]}")


def test_docker_25_form_with_an_oci_layout_inside(registry: Registry, tmp_path: Path) -> None:
    """Docker 25+ names members blobs/sha256/<hex> and adds index.json and oci-layout."""
    found = members(skopeo_archive(registry, tmp_path, "docker-v2", "app:1"))
    (entry,) = json.loads(found["manifest.json"])
    files: dict[str, bytes] = {}
    renamed = []
    for name in [entry["Config"], *entry["Layers"]]:
        data = found[name]
        digest = hashlib.sha256(data).hexdigest()
        files[f"blobs/sha256/{digest}"] = data
        renamed.append(f"blobs/sha256/{digest}")
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = b'{"schemaVersion":2,"manifests":[]}'
    entry.update(Config=renamed[0], Layers=renamed[1:])
    files["manifest.json"] = json.dumps([entry]).encode()
    archive = tmp_path / "docker25.tar"
    write_tar(archive, files)
    _ok("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'out'}:v1")
    assert image_config(tmp_path / "out") == image_config(FIXTURES / "docker-v2")


Edit = Callable[[dict[str, bytes], dict[str, str]], None]


def _legacy(registry: Registry, tmp_path: Path, edit: Edit) -> Path:
    """A docker-1.10-style archive (`<id>/layer.tar`), changed by `edit(files, links)`."""
    found = members(skopeo_archive(registry, tmp_path, "oci-single", "app:1"))
    (entry,) = json.loads(found["manifest.json"])
    files = {entry["Config"]: found[entry["Config"]]}
    links: dict[str, str] = {}
    layers = []
    for number, name in enumerate(entry["Layers"]):
        files[f"id{number}/layer.tar"] = found[name]
        layers.append(f"id{number}/layer.tar")
    entry["Layers"] = layers
    files["manifest.json"] = json.dumps([entry]).encode()
    edit(files, links)
    archive = tmp_path / "legacy.tar"
    write_tar(archive, files, links)
    return archive


def test_legacy_layer_directories_and_links_inside(registry: Registry, tmp_path: Path) -> None:
    def linked(files: dict[str, bytes], links: dict[str, str]) -> None:
        links["alias/layer.tar"] = "../id0/layer.tar"
        entry = json.loads(files["manifest.json"])[0]
        config = json.loads(files[entry["Config"]])
        first = config["rootfs"]["diff_ids"][0]
        config["rootfs"]["diff_ids"].append(first)  # the first layer again, by a link
        entry["Layers"].append("alias/layer.tar")
        raw = json.dumps(config).encode()
        del files[entry["Config"]]
        entry["Config"] = "config.json"  # not named by its digest: nothing to check it by
        files["config.json"] = raw
        files["manifest.json"] = json.dumps([entry]).encode()

    archive = _legacy(registry, tmp_path, linked)
    _ok("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'out'}:v1")
    _, diff_ids = image_config(tmp_path / "out")
    assert len(diff_ids) == 3
    assert diff_ids[0] == diff_ids[2]


def _refused(tmp_path: Path, archive: Path, said: str) -> None:
    """Copying the archive fails with one line containing `said`, and writes nothing."""
    for destination in (f"oci:{tmp_path / 'dest'}:v1", f"docker-archive:{tmp_path / 'd.tar'}"):
        result = mirror("copy", f"docker-archive:{archive}", destination)
        assert result.returncode == 1, result
        assert said in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "dest").exists()
        assert not (tmp_path / "d.tar").exists()


def test_a_truncated_archive(registry: Registry, tmp_path: Path) -> None:
    whole = skopeo_archive(registry, tmp_path, "oci-single", "app:1").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: len(whole) // 2])
    _refused(tmp_path, cut, "truncated")


def test_a_layer_whose_diff_id_does_not_match(registry: Registry, tmp_path: Path) -> None:
    def swapped(files: dict[str, bytes], links: dict[str, str]) -> None:
        files["id0/layer.tar"], files["id1/layer.tar"] = (
            files["id1/layer.tar"],
            files["id0/layer.tar"],
        )

    _refused(tmp_path, _legacy(registry, tmp_path, swapped), "diff_id")


def test_a_member_path_escaping_the_archive(registry: Registry, tmp_path: Path) -> None:
    def escaping(files: dict[str, bytes], links: dict[str, str]) -> None:
        entry = json.loads(files["manifest.json"])[0]
        entry["Layers"][0] = "../../etc/passwd"
        files["manifest.json"] = json.dumps([entry]).encode()

    _refused(tmp_path, _legacy(registry, tmp_path, escaping), "points outside")


def test_a_link_leading_out_of_the_archive(registry: Registry, tmp_path: Path) -> None:
    def link_out(files: dict[str, bytes], links: dict[str, str]) -> None:
        del files["id0/layer.tar"]
        links["id0/layer.tar"] = "../../../etc/passwd"

    _refused(tmp_path, _legacy(registry, tmp_path, link_out), "points outside")


def test_what_a_docker_archive_cannot_hold_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "artifact.tar"
    result = mirror("copy", f"oci:{FIXTURES / 'artifact'}:v1", f"docker-archive:{out}")
    assert result.returncode == 1
    assert "not a container image" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no archive, no staging directory


def test_a_compressed_archive_as_docker_load_takes_it(registry: Registry, tmp_path: Path) -> None:
    """`docker save app | gzip > app.tar.gz` (or zstd) is read as well, as a stream (never
    decompressed onto the disk)."""
    archive = skopeo_archive(registry, tmp_path, "docker-v2", "app:1")
    packed = tmp_path / "app.tar.gz"
    packed.write_bytes(gzip.compress(archive.read_bytes()))
    zstd = tmp_path / "app.tar.zst"
    zstd.write_bytes(zstandard.ZstdCompressor().compress(archive.read_bytes()))
    for compressed in (packed, zstd):
        out = tmp_path / f"out-{compressed.suffix}"
        _ok("copy", f"docker-archive:{compressed}", f"oci:{out}:v1")
        assert image_config(out) == archive_config(archive)
        assert json.loads(_ok("--json", "tags", f"docker-archive:{compressed}")) == [
            "docker.io/library/app:1"
        ]
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(packed.read_bytes()[:-40])
    _refused(tmp_path, cut, "cut.tar.gz")


async def test_a_position_names_no_image_to_write(tmp_path: Path) -> None:
    """`@N` picks an image when reading; written, it became `RepoTags: ["@0"]`, which neither
    `docker load` nor `podman load` accepts (skopeo: "Destination reference must not contain
    a manifest index @0"). Refused as a usage error, with nothing written."""
    out = tmp_path / "app.tar"
    source = f"oci:{FIXTURES / 'oci-single'}:v1"
    result = mirror("copy", source, f"docker-archive:{out}:@0")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "@0" in lines[0]
    assert "NAME:TAG" in lines[0]
    with pytest.raises(InvalidReference, match="@1"):
        await mirror_api.copy(source, f"docker-archive:{out}:@1")
    assert list(tmp_path.iterdir()) == []
