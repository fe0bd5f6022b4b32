"""The distribution spec's conformance workflows "pull" and "content discovery", written from
the spec's text and its conformance suite's steps, against `mirror serve --writable` (the
setup pushes, as the suite's does): blobs and manifests by HEAD and GET, 404s, an error body
with a spec code; tags listed, limited by `n`, started after `last`; referrers pushed before
and after their subject, as image manifests and as an index, one to a subject that does not
exist, listed with their annotations and filtered by `artifactType`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from tests.support.serving import serving

NAME = "conformance/repo"
ANNOTATION = "org.opencontainers.conformance.test"
TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}  # fmt: skip


def _desc(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


def _manifest(config: bytes, layer: bytes, **extra: Any) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": _desc(extra.pop("config_type", mt.OCI_CONFIG), config),
        "layers": [_desc(mt.OCI_LAYER_GZIP, layer)],
        **extra,
    }
    return json.dumps(body).encode()


class Registry:
    """The server under test, spoken to as the suite's client does."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def blob(self, data: bytes) -> None:
        """POST an upload, PUT the blob to its Location (the suite's "populate" step)."""
        started = await self.http.post(f"/v2/{NAME}/blobs/uploads/")
        assert started.status == 202
        done = await self.http.put(
            started.headers["Location"],
            params={"digest": str(Digest.of(data))},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert 200 <= done.status < 300

    async def manifest(self, reference: str, body: bytes, media_type: str = mt.OCI_MANIFEST
                       ) -> aiohttp.ClientResponse:  # fmt: skip
        """PUT a manifest; it must be taken."""
        answer = await self.http.put(
            f"/v2/{NAME}/manifests/{reference}", data=body, headers={"Content-Type": media_type}
        )
        assert 200 <= answer.status < 300, await answer.text()
        return answer


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    """`mirror serve --writable` of an empty layout, spoken to over HTTP."""
    with serving("--writable", f"oci:{tmp_path / 'layout'}") as served:
        async with aiohttp.ClientSession(served.url) as http:
            yield Registry(http)


async def test_pull(registry: Registry) -> None:
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"a layer of the pull test"
    await registry.blob(config)
    await registry.blob(layer)
    manifest = _manifest(config, layer)
    digest = str(Digest.of(manifest))
    await registry.manifest("tagtest0", manifest)
    http, dummy = registry.http, f"sha256:{'d' * 64}"
    tags = (await (await http.get(f"/v2/{NAME}/tags/list")).json())["tags"]
    assert tags == ["tagtest0"]
    # pull blobs
    assert (await http.head(f"/v2/{NAME}/blobs/{dummy}")).status == 404
    head = await http.head(f"/v2/{NAME}/blobs/{Digest.of(config)}")
    assert (head.status, head.headers["Docker-Content-Digest"]) == (200, str(Digest.of(config)))
    assert (await http.get(f"/v2/{NAME}/blobs/{dummy}")).status == 404
    got = await http.get(f"/v2/{NAME}/blobs/{Digest.of(config)}")
    assert (got.status, await got.read()) == (200, config)
    # pull manifests
    accept = {"Accept": mt.OCI_MANIFEST}
    assert (await http.head(f"/v2/{NAME}/manifests/nonexistent", headers=accept)).status == 404
    for reference in (digest, "tagtest0"):
        head = await http.head(f"/v2/{NAME}/manifests/{reference}", headers=accept)
        assert (head.status, head.headers["Docker-Content-Digest"]) == (200, digest)
        got = await http.get(f"/v2/{NAME}/manifests/{reference}", headers=accept)
        assert (got.status, await got.read()) == (200, manifest)
    assert (await http.get(f"/v2/{NAME}/manifests/nonexistent", headers=accept)).status == 404
    # error codes: a 400 carries a spec code
    wrong = await http.put(
        f"/v2/{NAME}/manifests/sha256:totallywrong",
        data=b'{"schemaVersion":2,"mediaType":"nonsense"}',
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert wrong.status in (400, 404)
    if wrong.status == 400:
        assert (await wrong.json())["errors"][0]["code"] in CODES


async def test_content_discovery(registry: Registry) -> None:
    empty, layer = mt.EMPTY_JSON, b"the layer of the discovery test"
    config_2 = b'{"architecture":"amd64","os":"linux","tagged":true}'
    config_4 = b'{"architecture":"arm64","os":"linux","subject":true}'
    ref_blob_a, ref_blob_b = b"referrer blob A", b"referrer blob B"
    for blob in (config_2, layer, empty, ref_blob_a):
        await registry.blob(blob)
    tagged = _manifest(config_2, layer)
    for i in range(4):
        await registry.manifest(f"test{i}", tagged)
    subject = _manifest(config_4, layer)  # manifests[4]: pushed after some of its referrers
    missing = _manifest(b'{"never":"pushed"}', layer)  # manifests[3]: never pushed
    about = {"mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of(subject)),
             "size": len(subject)}  # fmt: skip
    gone = {"mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of(missing)), "size": len(missing)}

    def referrer(blob: bytes, artifact_type: str, in_config: bool, to: dict[str, Any]) -> bytes:
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": _desc(artifact_type if in_config else mt.OCI_EMPTY, empty),
            "layers": [_desc("application/octet-stream", blob)],
            "subject": to,
            "annotations": {ANNOTATION: f"{artifact_type} {in_config} {blob.decode()}"},
        }
        if not in_config:
            body["artifactType"] = artifact_type
        return json.dumps(body).encode()

    expected: dict[str, str] = {}

    async def put_referrer(body: bytes, media_type: str = mt.OCI_MANIFEST) -> None:
        digest = str(Digest.of(body))
        answer = await registry.manifest(digest, body, media_type)
        assert answer.headers["OCI-Subject"] == json.loads(body)["subject"]["digest"]
        expected[digest] = json.loads(body)["annotations"][ANNOTATION]

    a_config = referrer(ref_blob_a, TYPE_A, True, about)
    a_layer = referrer(ref_blob_a, TYPE_A, False, about)
    await put_referrer(a_config)
    await put_referrer(a_layer)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "artifactType": TYPE_B,
            "manifests": [_desc(mt.OCI_MANIFEST, a_config), _desc(mt.OCI_MANIFEST, a_layer)],
            "subject": about,
            "annotations": {ANNOTATION: "the index"},
        }
    ).encode()
    await put_referrer(index, mt.OCI_INDEX)
    await registry.blob(config_4)
    await registry.manifest("tagtest0", subject)
    await registry.blob(ref_blob_b)
    await put_referrer(referrer(ref_blob_b, TYPE_B, True, about))
    await put_referrer(referrer(ref_blob_b, TYPE_B, False, about))
    to_missing = referrer(ref_blob_b, TYPE_A, False, gone)
    await put_referrer(to_missing)
    http = registry.http
    # listing tags
    listed = await http.get(f"/v2/{NAME}/tags/list")
    assert listed.status == 200
    tags = (await listed.json())["tags"]
    assert tags == ["tagtest0", "test0", "test1", "test2", "test3"]
    half = len(tags) // 2
    limited = (await (await http.get(f"/v2/{NAME}/tags/list", params={"n": half})).json())["tags"]
    assert len(limited) == half
    after = await http.get(f"/v2/{NAME}/tags/list", params={"n": half, "last": limited[-1]})
    following = (await after.json())["tags"]
    assert len(following) <= half
    assert limited[-1] not in following
    # listing referrers
    nothing = await http.get(f"/v2/{NAME}/referrers/sha256:{'d' * 64}")
    assert (nothing.status, nothing.headers["Content-Type"]) == (200, mt.OCI_INDEX)
    assert (await nothing.json())["manifests"] == []
    found = await http.get(f"/v2/{NAME}/referrers/{about['digest']}")
    assert (found.status, found.headers["Content-Type"]) == (200, mt.OCI_INDEX)
    listed_refs = (await found.json())["manifests"]
    assert len(listed_refs) == 5
    assert len({d["digest"] for d in listed_refs}) == 5
    for d in listed_refs:
        assert d["annotations"] == {ANNOTATION: expected[d["digest"]]}
    filtered = await http.get(
        f"/v2/{NAME}/referrers/{about['digest']}", params={"artifactType": TYPE_A}
    )
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    only_a = (await filtered.json())["manifests"]
    assert len(only_a) == 2
    assert {d["artifactType"] for d in only_a} == {TYPE_A}
    orphan = await (await http.get(f"/v2/{NAME}/referrers/{gone['digest']}")).json()
    assert [d["digest"] for d in orphan["manifests"]] == [str(Digest.of(to_missing))]
