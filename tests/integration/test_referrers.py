"""Referrers as a graph (issue 12): artifacts made as the ORAS client and cosign make them, a
three-level graph (a signature on an SBOM on an image) plus a cosign `.sig` tag, copied whole
and byte for byte by `copy --referrers`, through a layout, through a bundle and by sync;
re-runs that bring what was attached since for one request per image."""

from __future__ import annotations

import json
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror.endpoint import Endpoint
from mirror.layout import Layout
from mirror.oci.model import ManifestLike, fallback_tag
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions, Repository
from mirror.sync.config import SyncConfig, load_config
from mirror.sync.run import run_sync
from tests.support.artifacts import (
    ATTESTATION,
    SBOM,
    SIGNATURE,
    Pushed,
    attach,
    cosign_signature,
    list_by_fallback,
)
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy
from tests.support.tools import amirror

OPTIONS = RegistryOptions(use_docker_config=False)


@asynccontextmanager
async def repository(host: str, name: str) -> AsyncIterator[Repository]:
    """A repository of a registry as an endpoint (for pushing and reading back)."""
    async with RegistryClient(OPTIONS) as client:
        yield client.repository(RegistryReference(host, name), writing=True)


@dataclass
class Graph:
    """An image with a signature on its SBOM, and a cosign signature tag."""

    subject: ManifestLike
    sbom: Pushed
    signature: Pushed
    cosign: ManifestLike


async def make_graph(registry: Registry, name: str) -> Graph:
    """Push the oci-single fixture as `name:v1` and attach the graph to it."""
    registry.push_fixture("oci-single", name)
    async with repository(registry.host, name) as repo:
        subject = await repo.manifest_get("v1")
        sbom = await attach(repo, subject, b'{"spdxVersion":"SPDX-2.3"}', artifact_type=SBOM)
        signature = await attach(
            repo, sbom.manifest, b"signature of the sbom", artifact_type=SIGNATURE, oras_1_0=True
        )
        await list_by_fallback(repo, subject, [sbom])
        await list_by_fallback(repo, sbom.manifest, [signature])
        cosign = await cosign_signature(repo, subject, b'"v1"')
    return Graph(subject, sbom, signature, cosign)


async def assert_whole(dst: Endpoint, graph: Graph) -> None:
    """Every node of the graph is at `dst`, byte for byte, and listed as a referrer."""
    listed = (await dst.referrers(graph.subject.digest)).digests
    assert graph.sbom.manifest.digest in listed
    below = (await dst.referrers(graph.sbom.manifest.digest)).digests
    assert graph.signature.manifest.digest in below
    for manifest in (graph.subject, graph.sbom.manifest, graph.signature.manifest):
        assert (await dst.manifest_get(str(manifest.digest))).raw == manifest.raw


def _config(tmp_path: Path, text: str, name: str = "sync.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _referrers_job(
    tmp_path: Path, source: str, destination: str, head: str = "", job: str = ""
) -> SyncConfig:
    """A sync configuration of one referrers job taking the tag v1."""
    return load_config(
        _config(
            tmp_path,
            f"""
[defaults]
referrers = true
{head}
[[jobs]]
source = "{source}"
destination = "{destination}"
{job}
[jobs.tags]
include = ["^v1$"]
""",
        )
    )


async def test_sync_copies_a_referrer_of_a_referrer(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """Observation 1: copying went one level deep."""
    graph = await make_graph(registry, "ref1/app")
    config = _referrers_job(tmp_path, f"{registry.host}/ref1/app", f"{second_registry.host}/r1")
    report = await run_sync(config, options=OPTIONS)
    assert not report.failed, report.to_json()
    async with repository(second_registry.host, "r1/ref1/app") as dst:
        await assert_whole(dst, graph)


async def test_a_late_referrer_arrives_on_the_rerun_for_one_request(
    registry: Registry,
    second_registry: Registry,
    counting_proxy: tuple[FaultProxy, str],
    tmp_path: Path,
) -> None:
    """Observation 2: a re-run found the image up to date and never looked again. Now it
    asks one referrers request per up-to-date image, and no manifest GET."""
    proxy, host = counting_proxy
    graph = await make_graph(registry, "ref2/app")
    config = _referrers_job(
        tmp_path,
        f"{host}/ref2/app",
        f"{second_registry.host}/r2",
        head=f'[registries."{host}"]\nplain_http = true',
    )
    assert not (await run_sync(config, options=OPTIONS)).failed
    async with repository(registry.host, "ref2/app") as src:
        late = await attach(src, graph.subject, b"{}", artifact_type=ATTESTATION)
        await list_by_fallback(src, graph.subject, [graph.sbom, late])
    proxy.seen.clear()
    again = await run_sync(config, options=OPTIONS)
    assert [str(i.status) for i in again.images] == ["up-to-date"], again.to_json()
    async with repository(second_registry.host, "r2/ref2/app") as dst:
        listed = (await dst.referrers(graph.subject.digest)).digests
        assert {late.manifest.digest, graph.sbom.manifest.digest} <= listed
    # nothing changed since: one referrers request for the image, no manifest GET
    proxy.seen.clear()
    third = await run_sync(config, options=OPTIONS)
    assert [str(i.status) for i in third.images] == ["up-to-date"]
    manifest_gets = [p for m, p in proxy.seen if m == "GET" and "/manifests/" in p]
    assert manifest_gets == []
    tag = fallback_tag(graph.subject.digest)
    asked = [(m, p) for m, p in proxy.seen if "/referrers/" in p or p.endswith(f"/manifests/{tag}")]
    assert len(asked) == 1, proxy.seen


async def test_deleting_tags_keeps_the_fallback_and_digest_tags_of_kept_images(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """Observation 3: `delete = true` with a tag filter deleted the `sha256-<hex>` tag the
    same run wrote, and with it every referrer listing of the image."""
    graph = await make_graph(registry, "ref3/app")
    config = _referrers_job(
        tmp_path, f"{registry.host}/ref3/app", f"{second_registry.host}/r3", job="delete = true"
    )
    first = await run_sync(config, options=OPTIONS)
    assert not first.failed, first.to_json()
    second = await run_sync(config, options=OPTIONS)
    assert not [i for i in second.images if str(i.status) == "deleted"], second.to_json()
    async with repository(second_registry.host, "r3/ref3/app") as dst:
        tags = {t async for t in dst.tags()}
        subject_tag = fallback_tag(graph.subject.digest)
        assert {subject_tag, f"{subject_tag}.sig", "v1"} <= tags
        await assert_whole(dst, graph)


@pytest.mark.parametrize("to_layout", [False, True])
async def test_a_platform_filtered_image_is_up_to_date_on_the_rerun(
    registry: Registry, second_registry: Registry, tmp_path: Path, to_layout: bool
) -> None:
    """Observation 4: with `platforms`, every re-run copied every image again and the dry
    run planned them all."""
    registry.push_fixture("multi-arch", f"ref4/app{int(to_layout)}")
    destination = f"oci:{tmp_path / 'backup'}" if to_layout else f"{second_registry.host}/r4"
    config = load_config(
        _config(
            tmp_path,
            f"""
[defaults]
platforms = ["linux/amd64"]
[[jobs]]
source = "{registry.host}/ref4/app{int(to_layout)}"
destination = "{destination}"
""",
        )
    )
    assert [str(i.status) for i in (await run_sync(config, options=OPTIONS)).images] == ["copied"]
    again = await run_sync(config, options=OPTIONS)
    assert [str(i.status) for i in again.images] == ["up-to-date"], again.to_json()
    dry = await run_sync(config, options=OPTIONS, dry_run=True)
    assert [str(i.status) for i in dry.images] == ["up-to-date"], dry.to_json()


async def test_a_missing_source_repository_fails_only_its_job(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """Observation 5: one job whose source repository does not exist stopped the run at
    planning, although keep_going is the default."""
    registry.push_fixture("oci-single", "ref5/app")
    text = f"""
[defaults]
retries = 0
[[jobs]]
name = "unreachable"
source = "127.0.0.1:9/ref5/app"
destination = "{second_registry.host}/r5"
[[jobs]]
name = "gone"
source = "{registry.host}/ref5/never-pushed"
destination = "{second_registry.host}/r5"
[[jobs]]
name = "here"
source = "{registry.host}/ref5/app"
destination = "{second_registry.host}/r5"
"""
    path = _config(tmp_path, text)
    report = await run_sync(load_config(path), options=OPTIONS)
    by_job = {i.job: i for i in report.images}
    assert str(by_job["here"].status) == "copied"
    assert str(by_job["gone"].status) == "failed"
    assert "ref5/never-pushed" in by_job["gone"].error
    assert str(by_job["unreachable"].status) == "failed"
    assert "127.0.0.1:9" in by_job["unreachable"].error
    cli = await amirror("--json", "sync", str(path))
    assert cli.returncode == 1
    failed = [i for i in json.loads(cli.stdout)["images"] if i["status"] == "failed"]
    assert sorted(i["job"] for i in failed) == ["gone", "unreachable"]
    text_report = await amirror("sync", str(path))
    assert text_report.returncode == 1
    assert "ref5/never-pushed" in text_report.stdout
    strict = _config(
        tmp_path, text.replace("retries = 0", "retries = 0\nkeep_going = false"), "strict.toml"
    )
    stopped = await amirror("sync", str(strict))
    assert stopped.returncode == 1
    assert stopped.stderr.count("\n") == 1
    assert "unreachable" in stopped.stderr
    assert "keep_going" in stopped.stderr


async def test_the_sync_library_entry_points_are_public(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """Observation 6: `mirror.sync` was not reachable from `import mirror`, and the config
    loader refused a str."""
    import mirror

    registry.push_fixture("oci-single", "ref6/app")
    path = _config(
        tmp_path,
        f'[[jobs]]\nsource = "{registry.host}/ref6/app"\n'
        f'destination = "{second_registry.host}/r6"\n',
    )
    config = mirror.load_sync_config(str(path))
    report = await mirror.sync_run(config, options=OPTIONS)
    assert [str(i.status) for i in report.images] == ["copied"]
    assert {"load_sync_config", "sync_run"} <= set(mirror.__all__)


async def assert_layout_whole(layout_dir: Path, graph: Graph) -> None:
    """The layout holds the whole graph."""
    async with await Layout.open(layout_dir) as layout:
        await assert_whole(layout, graph)


async def assert_cosign(dst: Endpoint, graph: Graph, name: str | None = None) -> None:
    """The cosign signature tag came along, byte for byte."""
    tag = name or f"{fallback_tag(graph.subject.digest)}.sig"
    assert (await dst.manifest_get(tag)).raw == graph.cosign.raw


async def assert_arrived(host: str, name: str, graph: Graph) -> None:
    """The registry repository holds the whole graph and the cosign tag."""
    async with repository(host, name) as dst:
        await assert_whole(dst, graph)
        await assert_cosign(dst, graph)


async def test_copy_with_referrers_registry_to_registry(
    registry: Registry, second_registry: Registry
) -> None:
    graph = await make_graph(registry, "refc/app")
    done = await amirror(
        "--json",
        "copy",
        "--referrers",
        f"docker://{registry.host}/refc/app:v1",
        f"docker://{second_registry.host}/refc/app:v1",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["referrers"] >= 2
    assert report["digestTags"] == [f"{fallback_tag(graph.subject.digest)}.sig"]
    await assert_arrived(second_registry.host, "refc/app", graph)


async def test_copy_with_referrers_through_a_layout_and_back(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    graph = await make_graph(registry, "refl/app")
    layout = tmp_path / "layout"
    pulled = await amirror(
        "copy", "--referrers", f"docker://{registry.host}/refl/app:v1", f"oci:{layout}:v1"
    )
    assert pulled.returncode == 0, pulled.stderr
    async with await Layout.open(layout) as stored:
        await assert_whole(stored, graph)
        await assert_cosign(stored, graph)
    verified = await amirror("layout", "verify", "--strict", str(layout))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    pushed = await amirror(
        "copy", "--referrers", f"oci:{layout}:v1", f"docker://{second_registry.host}/refl/app:v1"
    )
    assert pushed.returncode == 0, pushed.stderr
    await assert_arrived(second_registry.host, "refl/app", graph)


async def test_a_bundle_carries_the_whole_graph(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    graph = await make_graph(registry, "refb/app")
    bundle = tmp_path / "week.tar.zst"
    made = await amirror(
        "bundle", "create", "--referrers", str(bundle), f"{registry.host}/refb/app:v1"
    )
    assert made.returncode == 0, made.stderr
    pushed = await amirror("bundle", "push", str(bundle), f"{second_registry.host}/carried")
    assert pushed.returncode == 0, pushed.stderr
    await assert_arrived(second_registry.host, "carried/refb/app", graph)


async def test_a_split_bundle_keeps_an_image_and_its_graph_in_one_part(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """The signatures, SBOM and cosign tag go into the part that holds their image: that
    part alone pushes the whole graph (the other image's part is missing: exit 1)."""
    graph = await make_graph(registry, "refp/app")
    registry.push_fixture("multi-arch", "refp/other")
    bundle = tmp_path / "split.tar"
    made = await amirror(
        "bundle", "create", "--referrers", "--max-part-size", "32kB", str(bundle),
        f"{registry.host}/refp/app:v1", f"{registry.host}/refp/other:v1",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    parts = sorted(tmp_path.glob("split.tar.part-*"))
    assert len(parts) > 1
    holder = next(p for p in parts if f"{registry.host}/refp/app:v1" in _complete_in(p))
    pushed = await amirror("bundle", "push", str(holder), f"{second_registry.host}/one")
    assert pushed.returncode == 1
    assert "refp/other:v1" in pushed.stderr
    await assert_arrived(second_registry.host, "one/refp/app", graph)


def _complete_in(part: Path) -> list[str]:
    """The images a part's record says are complete in it."""
    with tarfile.open(part) as tar:
        data = tar.extractfile("mirror-bundle.json")
        assert data is not None
        return [str(i["name"]) for i in json.loads(data.read())["images"]]


async def test_what_the_destination_listed_stays_and_digest_tags_can_be_left(
    registry: Registry, second_registry: Registry
) -> None:
    """A destination's own referrers stay listed beside those copied (never dropped), and
    `--no-digest-tags` leaves cosign's tags behind."""
    graph = await make_graph(registry, "refm/app")
    source = f"docker://{registry.host}/refm/app:v1"
    target = f"docker://{second_registry.host}/refm/app:v1"
    assert (await amirror("copy", source, target)).returncode == 0
    async with repository(second_registry.host, "refm/app") as dst:
        own = await attach(dst, graph.subject, b"{}", artifact_type=ATTESTATION)
        await list_by_fallback(dst, graph.subject, [own])
    done = await amirror("copy", "--referrers", "--no-digest-tags", source, target)
    assert done.returncode == 0, done.stderr
    async with repository(second_registry.host, "refm/app") as dst:
        listed = (await dst.referrers(graph.subject.digest)).digests
        assert {own.manifest.digest, graph.sbom.manifest.digest} <= listed
        assert f"{fallback_tag(graph.subject.digest)}.sig" not in {t async for t in dst.tags()}


async def test_a_registry_without_the_referrers_api_is_asked_for_it_once(
    registry: Registry,
    second_registry: Registry,
    counting_proxy: tuple[FaultProxy, str],
) -> None:
    """distribution answers the referrers API 404 (spec 1.1: a registry that has the API must
    not): a copy of the graph asks it once, then reads fallback tags only."""
    proxy, host = counting_proxy
    graph = await make_graph(registry, "refa/app")
    proxy.seen.clear()
    done = await amirror(
        "--plain-http",
        "copy",
        "--referrers",
        f"docker://{host}/refa/app:v1",
        f"docker://{second_registry.host}/refa/app:v1",
    )
    assert done.returncode == 0, done.stderr
    asked = [p for m, p in proxy.seen if "/referrers/" in p]
    assert len(asked) == 1, asked
    await assert_arrived(second_registry.host, "refa/app", graph)
