"""`mirror serve`'s content discovery, written from the distribution spec's text: the
referrers API answered from the subjects in the content (an ORAS-shaped SBOM, a
cosign-shaped signature, a signature on the SBOM) with its `artifactType` filter, and
`tags/list` and `_catalog` paged by `n` and `last` with a `Link` to the next page."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest

import mirror
from mirror.layout import Layout
from mirror.oci import mediatypes as mt
from mirror.oci.model import fallback_tag
from tests.integration.test_referrers import assert_cosign, assert_layout_whole, make_graph
from tests.support.artifacts import SBOM, SIGNATURE, attach, list_by_fallback
from tests.support.registry import Registry
from tests.support.serving import raw_request, serving
from tests.support.tools import FIXTURES, amirror


async def test_referrers_of_a_bundle_are_found_and_filtered_and_copied_whole(
    registry: Registry, tmp_path: Path
) -> None:
    graph = await make_graph(registry, "served-ref/app")
    bundle = tmp_path / "refs.tar"
    made = await amirror(
        "bundle", "create", "--referrers", str(bundle), f"{registry.host}/served-ref/app:v1"
    )
    assert made.returncode == 0, made.stderr
    with serving(str(bundle)) as served:
        path = f"/v2/served-ref/app/referrers/{graph.subject.digest}"
        listed = await raw_request(served.host, "GET", path)
        assert listed.status == 200
        assert listed.headers["content-type"] == mt.OCI_INDEX
        index = listed.json()
        assert (index["schemaVersion"], index["mediaType"]) == (2, mt.OCI_INDEX)
        assert [d["digest"] for d in index["manifests"]] == [str(graph.sbom.manifest.digest)]
        assert index["manifests"][0]["artifactType"] == SBOM
        assert "oci-filters-applied" not in listed.headers
        below = (
            await raw_request(
                served.host, "GET", f"/v2/served-ref/app/referrers/{graph.sbom.manifest.digest}"
            )
        ).json()
        assert [(d["digest"], d["artifactType"]) for d in below["manifests"]] == [
            (str(graph.signature.manifest.digest), SIGNATURE)  # ORAS 1.0: the config's type
        ]
        for wanted, expected in ((SBOM, [str(graph.sbom.manifest.digest)]), ("x/none", [])):
            filtered = await raw_request(
                served.host, "GET", f"{path}?artifactType={quote(wanted, safe='')}"
            )
            assert filtered.headers["oci-filters-applied"] == "artifactType"
            assert [d["digest"] for d in filtered.json()["manifests"]] == expected
        nothing = await raw_request(
            served.host, "GET", f"/v2/served-ref/app/referrers/sha256:{'1' * 64}"
        )
        assert (nothing.status, nothing.json()["manifests"]) == (200, [])
        unknown = await raw_request(served.host, "GET", f"/v2/nope/referrers/sha256:{'1' * 64}")
        assert (unknown.status, unknown.code) == (404, "NAME_UNKNOWN")
        into = tmp_path / "pulled"
        pulled = await amirror(
            "copy", "--referrers", f"docker://{served.host}/served-ref/app:v1", f"oci:{into}:v1"
        )
        assert pulled.returncode == 0, pulled.stderr
    await assert_layout_whole(into, graph)
    async with await Layout.open(into) as layout:
        await assert_cosign(layout, graph)


async def test_a_cosign_signature_on_a_layout_is_found_through_the_referrers_api(
    tmp_path: Path,
) -> None:
    root = tmp_path / "layout"
    await mirror.copy(f"oci:{FIXTURES / 'multi-arch'}:v1", f"oci:{root}:signed/app:v1")
    async with await Layout.open(root, create=True) as layout:
        subject = await layout.manifest_get("signed/app:v1")
        signature = await attach(layout, subject, b"a cosign signature", artifact_type=SIGNATURE)
        sbom = await attach(layout, subject, b'{"spdxVersion":"SPDX-2.3"}', artifact_type=SBOM)

        await list_by_fallback(
            layout, subject, [signature, sbom], f"signed/app:{fallback_tag(subject.digest)}"
        )
    with serving(f"oci:{root}") as served:
        answer = await raw_request(served.host, "GET", f"/v2/signed/app/referrers/{subject.digest}")
        found = {d["digest"]: d for d in answer.json()["manifests"]}
    assert set(found) == {str(signature.manifest.digest), str(sbom.manifest.digest)}
    assert found[str(signature.manifest.digest)]["artifactType"] == SIGNATURE
    assert found[str(sbom.manifest.digest)]["annotations"] == {
        "org.opencontainers.image.created": "2026-11-28T00:00:00Z"
    }
    assert found[str(sbom.manifest.digest)]["size"] == sbom.manifest.size


@pytest.fixture
def many_names(tmp_path: Path) -> Path:
    """A layout of one image under 25 tags of `page/app` and in 12 repositories."""
    root = tmp_path / "many"

    async def build() -> None:
        await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", f"oci:{root}:page/app:t00")
        async with await Layout.open(root, create=True) as layout:
            desc = await layout.resolve("page/app:t00")
            for i in range(1, 25):
                await layout.add_image(desc, f"page/app:t{i:02}")
            for i in range(12):
                await layout.add_image(desc, f"page/r{i:02}:v1")

    asyncio.run(build())
    return root


async def _pages(host: str, first: str, key: str) -> list[list[str]]:
    """Every page of a listing, following `Link` from `first`."""
    pages, path = [], first
    while True:
        answer = await raw_request(host, "GET", path)
        assert answer.status == 200
        pages.append(answer.json()[key])
        link = answer.headers.get("link")
        if link is None:
            return pages
        assert link.endswith('>; rel="next"')
        path = link[1 : link.index(">")]


async def test_tags_and_the_catalog_are_paged_by_n_and_last_with_a_link(many_names: Path) -> None:
    tags = [f"t{i:02}" for i in range(25)]
    repositories = ["page/app", *(f"page/r{i:02}" for i in range(12))]
    with serving(f"oci:{many_names}") as served:
        whole = (await raw_request(served.host, "GET", "/v2/page/app/tags/list")).json()
        assert whole == {"name": "page/app", "tags": tags}
        pages = await _pages(served.host, "/v2/page/app/tags/list?n=10", "tags")
        assert pages == [tags[:10], tags[10:20], tags[20:]]
        after = (await raw_request(served.host, "GET", "/v2/page/app/tags/list?last=t22")).json()
        assert after["tags"] == ["t23", "t24"]
        first = await raw_request(served.host, "GET", "/v2/page/app/tags/list?n=10")
        assert first.headers["link"] == '</v2/page/app/tags/list?n=10&last=t09>; rel="next"'
        catalog = await _pages(served.host, "/v2/_catalog?n=5", "repositories")
        assert catalog == [repositories[:5], repositories[5:10], repositories[10:]]
        none = await raw_request(served.host, "GET", "/v2/page/app/tags/list?n=0")
        assert (none.json()["tags"], "link" in none.headers) == ([], False)
        bad = await raw_request(served.host, "GET", "/v2/page/app/tags/list?n=-1")
        assert bad.status == 400


async def test_a_manifest_missing_at_first_is_read_when_it_arrives(tmp_path: Path) -> None:
    """An index whose child (a referrer) is not stored yet: once the child arrives and the
    index changes, the referrers API finds it (what was missing is not remembered)."""
    root = tmp_path / "layout"
    await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", f"oci:{root}:late/app:v1")
    async with await Layout.open(root, create=True) as layout:
        subject = await layout.manifest_get("late/app:v1")
        sbom = await attach(layout, subject, b'{"spdxVersion":"SPDX-2.3"}', artifact_type=SBOM)
        listing = await list_by_fallback(
            layout, subject, [sbom], f"late/app:{fallback_tag(subject.digest)}"
        )
    held = tmp_path / "held"
    layout.blob_path(sbom.manifest.digest).rename(held)
    path = f"/v2/late/app/referrers/{subject.digest}"
    with serving(f"oci:{root}") as served:
        assert (await raw_request(served.host, "GET", path)).json()["manifests"] == []
        held.rename(layout.blob_path(sbom.manifest.digest))
        async with await Layout.open(root, create=True) as writing:
            await writing.add_image(listing.descriptor(), "late/app:again")
        found = (await raw_request(served.host, "GET", path)).json()["manifests"]
        assert [d["digest"] for d in found] == [str(sbom.manifest.digest)]
