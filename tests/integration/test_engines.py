"""Docker and Podman pull what mirror pushes, and mirror copies what they push.

The real engines (Debian's dockerd 20.10 and rootful podman 4.3, `tests/support/engines.py`)
against the real registry: images mirror pushed (a single-platform OCI image, a Docker v2
image, a multi-platform OCI index) are pulled by tag and by digest with the digests mirror
pushed; a docker container is created from one; images the engines push are copied by mirror
into a layout that verifies strictly.
"""

from __future__ import annotations

import io
import json
import platform
import tarfile
from pathlib import Path

import pytest

from tests.support.engines import (
    DOCKER_PLUGIN_RUN_DIR,
    Engine,
    processes_mentioning,
    start_dockerd,
)
from tests.support.registry import Registry
from tests.support.tools import FIXTURES, fixture_digest, mirror

PUSHED = ("oci-single", "docker-v2", "multi-arch")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _blob(kind: str, digest: str) -> dict[str, object]:
    algorithm, hex_ = digest.split(":")
    path = FIXTURES / kind / "blobs" / algorithm / hex_
    data: dict[str, object] = json.loads(path.read_bytes())
    return data


def _config_digest(kind: str) -> str:
    """The config digest of the fixture's image for this machine: the engines' image ID."""
    document = _blob(kind, fixture_digest(kind))
    if "manifests" in document:
        entries = document["manifests"]
        assert isinstance(entries, list)
        ours = next(m for m in entries if m["platform"]["architecture"] == ARCH)
        document = _blob(kind, ours["digest"])
    config = document["config"]
    assert isinstance(config, dict)
    return str(config["digest"])


def _tree(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def test_dockerd_writes_nothing_under_etc_and_leaves_no_process(tmp_path: Path) -> None:
    """A dockerd of its own (first in the file, before the session's): its containerd runs
    under it while it runs; after `stop` no process names its folder, /etc/docker is as it was
    and the host's IP forwarding was not switched on."""
    etc_before = _tree(Path("/etc/docker")), _tree(Path("/etc/containerd"))
    forwarding_before = IP_FORWARD.read_text()
    run_dir_before = DOCKER_PLUGIN_RUN_DIR.parent.exists()
    daemon = start_dockerd(tmp_path / "d")
    try:
        running = processes_mentioning(daemon.root)
        assert daemon.process.pid in running
        assert len(running) >= 2, "dockerd started no containerd of its own under its folder"
        assert (daemon.root / "key.json").exists()
        assert (daemon.root / "exec" / "containerd" / "containerd.sock").exists()
    finally:
        killed = daemon.stop()
    assert killed == []
    assert processes_mentioning(daemon.root) == []
    assert (_tree(Path("/etc/docker")), _tree(Path("/etc/containerd"))) == etc_before
    assert IP_FORWARD.read_text() == forwarding_before
    assert DOCKER_PLUGIN_RUN_DIR.parent.exists() == run_dir_before


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> dict[str, str]:
    """The fixtures pushed into the registry by `mirror copy`: kind -> `host/engines/kind`."""
    names = {}
    for kind in PUSHED:
        name = f"{registry.host}/engines/{kind}"
        result = mirror("copy", "--json", f"oci:{FIXTURES / kind}:v1", f"docker://{name}:v1")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["digest"] == fixture_digest(kind)
        names[kind] = name
    return names


@pytest.mark.parametrize("kind", PUSHED)
@pytest.mark.parametrize("engine_name", ["dockerd", "podman"])
def test_engine_pulls_by_tag_and_digest_what_mirror_pushed(
    engine_name: str, kind: str, pushed: dict[str, str], request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(engine_name)
    name, digest = pushed[kind], fixture_digest(kind)
    engine.pull(f"{name}:v1")
    assert f"{name}@{digest}" in engine.repo_digests(f"{name}:v1")
    if engine.name == "docker":
        check = engine("inspect", "--format", "{{index .RepoDigests 0}}", f"{name}:v1")
        assert check.stdout.strip() == f"{name}@{digest}"
    assert engine.image_id(f"{name}:v1") == _config_digest(kind)

    engine.pull(f"{name}@{digest}")
    assert engine.image_id(f"{name}@{digest}") == _config_digest(kind)


def test_docker_creates_a_container_from_an_image_mirror_pushed(
    dockerd: Engine, pushed: dict[str, str], tmp_path: Path
) -> None:
    ref = f"{pushed['oci-single']}@{fixture_digest('oci-single')}"
    dockerd.pull(ref)
    container = dockerd("create", "--network", "none", ref).stdout.strip()
    try:
        assert dockerd("inspect", "--format", "{{.State.Status}}", container).stdout.strip() == (
            "created"
        )
        exported = tmp_path / "rootfs.tar"
        dockerd("export", "--output", str(exported), container)
        with tarfile.open(exported) as rootfs:
            hello = rootfs.extractfile("bin/hello")
            motd = rootfs.extractfile("etc/motd")
            assert hello is not None
            assert motd is not None
            assert hello.read() == b"#!/bin/sh\necho hello from mirror fixtures\n"
            assert motd.read() == b"mirror test image\n"
    finally:
        dockerd("rm", container)


def _small_tar(path: Path, text: bytes) -> Path:
    """A tar of one file, for `docker import` / `podman import`."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(text), 1_700_000_000
        tar.addfile(info, io.BytesIO(text))
    return path


def _copy_and_verify(source: str, out: Path) -> str:
    """`mirror copy` SOURCE into a layout, `layout verify --strict` it; the digest copied."""
    result = mirror("copy", "--json", source, f"oci:{out}:pushed")
    assert result.returncode == 0, result.stderr
    verified = mirror("layout", "verify", "--strict", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return str(json.loads(result.stdout)["digest"])


def test_mirror_copies_what_docker_pushed_into_a_layout_that_verifies(
    dockerd: Engine, registry: Registry, tmp_path: Path
) -> None:
    name = f"{registry.host}/engines/from-docker"
    dockerd("import", str(_small_tar(tmp_path / "small.tar", b"from docker\n")), f"{name}:v1")
    dockerd.push(f"{name}:v1")
    [pushed] = dockerd.repo_digests(f"{name}:v1")

    copied = _copy_and_verify(f"docker://{name}:v1", tmp_path / "layout")

    assert f"{name}@{copied}" == pushed
    index = json.loads((tmp_path / "layout" / "index.json").read_bytes())
    assert index["manifests"][0]["mediaType"] == (
        "application/vnd.docker.distribution.manifest.v2+json"
    )


def test_mirror_copies_what_podman_pushed_into_a_layout_that_verifies(
    podman: Engine, registry: Registry, tmp_path: Path
) -> None:
    name = f"{registry.host}/engines/from-podman"
    podman("import", str(_small_tar(tmp_path / "small.tar", b"from podman\n")), f"{name}:v1")
    digest_file = tmp_path / "digest"
    podman.push(f"{name}:v1", "--format", "oci", "--digestfile", str(digest_file))

    copied = _copy_and_verify(f"docker://{name}:v1", tmp_path / "layout")

    assert copied == digest_file.read_text().strip()
    index = json.loads((tmp_path / "layout" / "index.json").read_bytes())
    assert index["manifests"][0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
