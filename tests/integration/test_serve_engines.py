"""Docker and Podman pull from `mirror serve` (issue 28): every image of a served layout,
oci-archive and bundle — a single-platform OCI image, a Docker v2 image, a multi-platform
index — by tag and by digest, with the source's digests; docker creates a container from one.
The real engines of `tests/support/engines.py`; the server as users run it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.engines import Engine
from tests.support.registry import Registry
from tests.support.serving import Served, build_sources, serving
from tests.support.tools import fixture_digest

KINDS = ("oci-single", "docker-v2", "multi-arch")


@pytest.fixture(scope="module")
def served(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module: a layout naming `lay/<kind>:v1`, an oci-archive of plain
    tags under `--repository arch`, a bundle of `bun/<kind>:v1` made from the registry."""
    root = tmp_path_factory.mktemp("served-to-engines")
    sources = build_sources(registry.host, root, KINDS, "lay", "bun")
    with serving(
        "--repository",
        "arch",
        f"oci:{sources['layout']}",
        f"oci-archive:{sources['archive']}",
        str(sources["bundle"]),
    ) as server:
        yield server


def _images(host: str) -> list[tuple[str, str, str]]:
    """(by tag, by digest, digest) of every served image."""
    out = []
    for kind in KINDS:
        digest = fixture_digest(kind)
        for name, tag in ((f"lay/{kind}", "v1"), ("arch", kind), (f"bun/{kind}", "v1")):
            out.append((f"{host}/{name}:{tag}", f"{host}/{name}@{digest}", digest))
    return out


@pytest.mark.parametrize("engine_name", ["dockerd", "podman"])
def test_engines_pull_every_served_image_by_tag_and_digest(
    engine_name: str, served: Served, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(engine_name)
    for by_tag, by_digest, digest in _images(served.host):
        engine.pull(by_tag)
        name = by_tag.rsplit(":", 1)[0]
        assert f"{name}@{digest}" in engine.repo_digests(by_tag), by_tag
        engine.pull(by_digest)
        assert f"{name}@{digest}" in engine.repo_digests(by_digest), by_digest
        engine("image", "rm", "-f", by_tag, by_digest, check=False)


def test_docker_creates_a_container_from_a_served_image(served: Served, dockerd: Engine) -> None:
    ref = f"{served.host}/bun/oci-single:v1"
    dockerd.pull(ref)
    created = dockerd("create", "--network", "none", ref, "/bin/hello").stdout.strip()
    try:
        inspected = dockerd("container", "inspect", "--format", "{{.Image}}", created).stdout
        assert inspected.strip() == dockerd.image_id(ref)
    finally:
        dockerd("rm", "-f", created, check=False)
