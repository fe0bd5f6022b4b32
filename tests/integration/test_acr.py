"""Azure Container Registry support, against a scripted ACR (exchange, JWT-dated tokens,
/acr/v1, blob redirects) in front of the real registry."""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import mirror
from mirror.auth import tokens
from mirror.auth.azure import AZURE_CHINA, AZURE_PUBLIC, AZURE_US_GOVERNMENT
from mirror.auth.sources import AzureAD
from mirror.errors import Forbidden, ManifestNotFound
from mirror.manage import (
    ContainerRegistryClient,
    ContainerRegistryContentClient,
    ManifestOrder,
)
from mirror.registry import RegistryOptions
from tests.support.acr import FakeCredential, ScriptedAcr
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, StorageServer, address, serve
from tests.support.tools import FIXTURES, amirror, fixture_digest

D = [f"sha256:{str(i) * 64}" for i in range(1, 6)]


@dataclass
class Acr:
    """The scripted ACR, its storage host, and its address."""

    server: ScriptedAcr
    storage: StorageServer
    host: str


@pytest.fixture
async def acr(registry: Registry) -> AsyncIterator[Acr]:
    """A scripted ACR with repository hello/world holding five dated manifests."""
    storage = StorageServer(registry.host)
    storage_runner = await serve(storage.app(), host="127.0.0.2")
    server = ScriptedAcr(registry.host, address(storage_runner))
    server.add_repository(
        "hello/world",
        [
            (D[0], "2024-01-01T00:00:00Z", ["v1"]),
            (D[1], "2024-01-02T00:00:00Z", ["v2"]),
            (D[2], "2024-01-03T00:00:00Z", ["v3", "stable"]),
            (D[3], "2024-01-04T00:00:00.1234567Z", ["v4"]),
            (D[4], "2024-01-05T00:00:00Z", ["v5", "latest"]),
        ],
    )
    runner = await serve(server.app())
    server.host = address(runner)
    yield Acr(server, storage, server.host)
    await runner.cleanup()
    await storage_runner.cleanup()


def _client(acr: Acr, credential: FakeCredential | None, **kw: object) -> ContainerRegistryClient:
    options = RegistryOptions(use_docker_config=False, acr=frozenset({acr.host}))
    return ContainerRegistryClient(f"http://{acr.host}", credential, options=options, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        (None, AZURE_PUBLIC),
        (AZURE_CHINA, AZURE_CHINA),
        (AZURE_US_GOVERNMENT, AZURE_US_GOVERNMENT),
        ("https://management.azure.com", "https://management.azure.com"),
    ],
)
async def test_aad_scope_follows_the_audience(
    acr: Acr, audience: str | None, expected: str
) -> None:
    credential = FakeCredential()
    async with _client(acr, credential, audience=audience) as client:
        assert await client.is_acr()
        assert [n async for n in client.list_repository_names()] == ["hello/world"]
    assert set(credential.scopes) == {f"{expected}/.default"}
    assert acr.server.exchanges[0]["grant_type"] == "access_token"
    # the exchange carries exactly the token the credential handed out
    assert [e["access_token"] for e in acr.server.exchanges] == credential.issued


async def test_tokens_are_reused_until_they_expire(
    acr: Acr, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(tokens, "clock", lambda: now[0])  # time moves only when told
    acr.server.token_ttl = 7  # renewed about 1.3 s after issue
    credential = FakeCredential()
    async with _client(acr, credential) as client:
        repo = client.get_repository("hello/world")
        for _ in range(3):
            await repo.get_properties()
        assert len(acr.server.exchanges) == 1
        reads = [t for t in acr.server.token_requests if "metadata_read" in t["scope"]]
        assert len(reads) == 1
        now[0] += 0.9  # under the shortest renewal time (1 s)
        await repo.get_properties()
        reads = [t for t in acr.server.token_requests if "metadata_read" in t["scope"]]
        assert len(reads) == 1  # not yet
        now[0] += 0.5  # past the longest (1.3 s)
        await repo.get_properties()
        reads = [t for t in acr.server.token_requests if "metadata_read" in t["scope"]]
        assert len(reads) == 2
        assert len(acr.server.exchanges) == 1  # the refresh token is still good
    assert len(credential.scopes) == 1


async def test_properties_order_and_patch_bodies(acr: Acr) -> None:
    async with _client(acr, FakeCredential()) as client:
        repo = client.get_repository("hello/world")
        props = await repo.get_properties()
        assert (props.manifest_count, props.tag_count) == (5, 7)
        assert props.created_on == datetime.datetime(
            2024, 1, 1, 0, 0, 0, 123456, tzinfo=datetime.UTC
        )  # ACR's seven fractional digits, parsed
        newest = [m async for m in repo.list_manifest_properties(order_by=ManifestOrder.NEWEST)]
        # ACR orders (asked for below); the client parses each time, fractions included
        day = datetime.timedelta(days=1)
        start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
        assert {m.digest: m.last_updated_on for m in newest} == {
            d: start + i * day + (datetime.timedelta(microseconds=123456) if i == 3 else 0 * day)
            for i, d in enumerate(D)
        }
        assert [m.digest for m in newest] == D[::-1]
        assert newest[0].tags == ("latest", "v5")
        oldest = [
            m.digest async for m in repo.list_manifest_properties(order_by=ManifestOrder.OLDEST)
        ]
        assert oldest == D
        assert any("orderby=timedesc" in q for q in acr.server.queries)
        assert any("orderby=timeasc" in q for q in acr.server.queries)
        updated = await repo.update_properties(can_write=False, can_delete=False)
        assert updated.attributes.can_write is False
        artifact = repo.get_artifact("stable")
        assert await artifact.digest() == D[2]
        tag = await artifact.update_tag_properties("stable", can_delete=False, can_write=False)
        assert tag.attributes.can_delete is False
        manifest = await artifact.update_manifest_properties(can_list=False, can_read=True)
        assert manifest.attributes.can_list is False
        assert sorted([t.name async for t in artifact.list_tag_properties()]) == ["stable", "v3"]
    assert acr.server.patches == [
        ("/acr/v1/hello/world", {"deleteEnabled": False, "writeEnabled": False}),
        ("/acr/v1/hello/world/_tags/stable", {"deleteEnabled": False, "writeEnabled": False}),
        (f"/acr/v1/hello/world/_manifests/{D[2]}", {"listEnabled": False, "readEnabled": True}),
    ]


async def test_delete_all_but_the_newest_three(acr: Acr) -> None:
    async with _client(acr, FakeCredential()) as client:
        repo = client.get_repository("hello/world")
        manifests = [m async for m in repo.list_manifest_properties(order_by=ManifestOrder.NEWEST)]
        for manifest in manifests[3:]:
            artifact = repo.get_artifact(manifest.digest)
            for tag in manifest.tags:
                await artifact.delete_tag(tag)
            await artifact.delete()
        left = [m.digest async for m in repo.list_manifest_properties()]
    assert left == [D[4], D[3], D[2]]


async def test_locked_tag_and_missing_tag_are_one_line(acr: Acr) -> None:
    acr.server.repositories["hello/world"]["tags"]["v1"].attrs["deleteEnabled"] = False
    acr.server.anonymous_actions = frozenset({"pull", "metadata_read", "delete"})
    async with _client(acr, None) as client:
        with pytest.raises(Forbidden):
            await client.get_artifact("hello/world", "v1").delete_tag("v1")
        with pytest.raises(ManifestNotFound):
            await client.get_artifact("hello/world", D[0]).get_tag_properties("nope")
    locked = await amirror("--plain-http", "delete", f"{acr.host}/hello/world:v1")
    assert (locked.returncode, locked.stderr.count("\n")) == (1, 1)
    assert "403" in locked.stderr
    missing = await amirror("--plain-http", "delete", f"{acr.host}/hello/world:nope")
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)
    assert "not found" in missing.stderr


async def test_a_metadata_delete_whose_answer_was_lost_is_done(acr: Acr) -> None:
    """A front end passes the DELETE of a tag on and loses ACR's answer (504): the retry's
    404 means the tag is gone, not that it never was."""
    acr.server.anonymous_actions = frozenset({"pull", "metadata_read", "delete"})
    proxy = FaultProxy(
        acr.host,
        rate=1.0,
        faults=("after-504",),
        fault_on=r"^DELETE /acr/v1/",
        faults_at_most=1,
        keep_authorization=True,
    )
    runner = await serve(proxy.app())
    front = address(runner)
    options = RegistryOptions(use_docker_config=False, acr=frozenset({front}))
    try:
        async with ContainerRegistryClient(f"http://{front}", None, options=options) as client:
            artifact = client.get_artifact("hello/world", "v1")
            await artifact.get_tag_properties("v1")  # the challenge learnt: tokens up front
            await artifact.delete_tag("v1")
    finally:
        await runner.cleanup()
    assert proxy.injected_on == [("DELETE", "after-504")]
    assert [m for m, _ in proxy.seen if m == "DELETE"] == ["DELETE"] * 2
    assert "v1" not in acr.server.repositories["hello/world"]["tags"]


async def test_anonymous_pull_and_listing(acr: Acr) -> None:
    acr.server.anonymous_actions = frozenset({"pull", "metadata_read"})
    async with _client(acr, None) as client:
        tags = [
            t.name async for t in client.get_artifact("hello/world", "latest").list_tag_properties()
        ]
    assert sorted(tags) == ["latest", "v5"]
    assert {t["grant_type"] for t in acr.server.token_requests} == {"password"}
    assert not acr.server.exchanges


async def test_blob_download_is_redirected_without_authorization(
    acr: Acr, registry: Registry
) -> None:
    registry.push_fixture("oci-single", "hello/content")
    options = RegistryOptions(use_docker_config=False, acr=frozenset({acr.host}))
    async with ContainerRegistryContentClient(
        f"http://{acr.host}", "hello/content", FakeCredential(), options=options
    ) as content:
        manifest = await content.get_manifest("v1")
        for layer in manifest.manifest["layers"]:
            blob = await content.download_blob(layer["digest"])
            data = b"".join([chunk async for chunk in blob.content])
            assert len(data) == layer["size"]
        uploaded = await content.upload_blob(b"uploaded through the scripted ACR")
        again = await content.download_blob(uploaded.digest)
        assert b"".join([c async for c in again.content]) == b"uploaded through the scripted ACR"
    assert len(acr.storage.seen) == 3
    assert all("Authorization" not in headers for headers in acr.storage.seen)


async def test_delete_repository_uses_the_metadata_api(acr: Acr) -> None:
    async with _client(acr, FakeCredential()) as client:
        await client.delete_repository("hello/world")
        assert [n async for n in client.list_repository_names()] == []


async def test_requests_are_spelled_as_the_service_and_its_sdks_spell_them(acr: Acr) -> None:
    """Issue 11: `api-version` on the token endpoints, repository names as one
    percent-encoded path segment, and `Accept: application/json` on the metadata API."""
    async with _client(acr, FakeCredential()) as client:
        repo = client.get_repository("hello/world")
        await repo.get_properties()
        assert [
            t.name async for t in client.get_artifact("hello/world", "v1").list_tag_properties()
        ]
    oauth = [(m, p) for m, p, _ in acr.server.calls if p.startswith("/oauth2/")]
    assert {p.split("?")[0] for _, p in oauth} == {"/oauth2/exchange", "/oauth2/token"}
    assert all("api-version=2021-07-01" in p for _, p in oauth)
    metadata = [(p, accept) for _, p, accept in acr.server.calls if p.startswith("/acr/v1/")]
    named = [p for p, _ in metadata if "_catalog" not in p]
    assert named
    assert all(p.startswith("/acr/v1/hello%2Fworld") for p in named)
    assert all(accept == "application/json" for _, accept in metadata)


async def test_listings_page_like_the_service(acr: Acr) -> None:
    """Issue 11: the service pages with `n` and `last` and a relative `Link`; every page is
    followed (250 tags, 150 repositories: three and two pages of 100)."""
    many = [
        (f"sha256:{i:064x}", f"2024-02-01T00:00:{i % 60:02d}Z", [f"t{i:03d}"]) for i in range(250)
    ]
    acr.server.add_repository("paged/app", many)
    for i in range(149):
        acr.server.add_repository(f"repo{i:03d}", [])
    async with _client(acr, FakeCredential()) as client:
        names = [n async for n in client.list_repository_names()]
        assert len(names) == 151
        repo = client.get_repository("paged/app")
        manifests = [m async for m in repo.list_manifest_properties()]
        assert len({m.digest for m in manifests}) == 250
        tags = [
            t.name async for t in client.get_artifact("paged/app", "t007").list_tag_properties()
        ]
        assert tags == ["t007"]
    pages = [q for q in acr.server.queries if q.startswith("/acr/v1/paged%2Fapp/_manifests?")]
    assert len(pages) == 3
    assert sum("last=" in q for q in pages) == 2


async def test_a_custom_domain_is_recognised_as_acr_by_its_answers(acr: Acr) -> None:
    """No `*.azurecr.io` name and no option: the `/acr/v1` probe (answered with ACR's token
    challenge) picks the ACR backend, anonymously here."""
    acr.server.anonymous_actions = frozenset({"pull", "metadata_read"})
    options = RegistryOptions(use_docker_config=False)
    async with ContainerRegistryClient(f"http://{acr.host}", options=options) as client:
        assert await client.is_acr()
        props = await client.get_repository("hello/world").get_properties()
        assert (props.manifest_count, props.tag_count) == (5, 7)


async def test_metadata_describes_what_was_pushed_and_locks_hold(acr: Acr) -> None:
    """As the service (and its SDKs' recorded sessions) behave: the metadata API describes
    what was pushed (digest, size, media type, platform); a push moves its tag's
    `lastUpdateTime`; attribute PATCHes do not (and are not blocked by `writeEnabled`); a
    write-locked tag refuses a push, a delete-locked manifest a delete."""
    credential = FakeCredential()
    options = RegistryOptions(
        use_docker_config=False,
        acr=frozenset({acr.host}),
        sign_in=(AzureAD(credential, registries=frozenset({acr.host})),),
    )
    target = f"docker://{acr.host}/pushed/app:v1"
    await mirror.copy(
        f"oci:{FIXTURES / 'docker-v2'}:v1",
        target,
        options=options,
    )
    async with _client(acr, credential) as client:
        artifact = client.get_artifact("pushed/app", "v1")
        props = await artifact.get_manifest_properties()
        assert props.digest == fixture_digest("docker-v2")
        assert (
            props.size
            == (FIXTURES / "docker-v2" / "blobs" / "sha256" / props.digest[7:]).stat().st_size
        )
        assert (props.architecture, props.operating_system) == ("amd64", "linux")
        tag = await artifact.get_tag_properties("v1")
        assert tag.last_updated_on == tag.created_on
        locked = await artifact.update_tag_properties("v1", can_write=False, can_delete=False)
        assert locked.attributes.can_write is False
        assert locked.last_updated_on == tag.last_updated_on  # a PATCH is no write
    with pytest.raises(Forbidden):  # the write-locked tag refuses a push
        await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1",
            target,
            options=options,
        )
    async with _client(acr, credential) as client:
        artifact = client.get_artifact("pushed/app", "v1")
        await artifact.update_tag_properties("v1", can_write=True)
        await artifact.update_manifest_properties(can_delete=False)
        moved = await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1",
            target,
            options=options,
        )
        tag = await artifact.get_tag_properties("v1")
        assert tag.digest == moved.digest
        assert tag.last_updated_on is not None
        assert tag.created_on is not None
        assert tag.last_updated_on > tag.created_on  # the push moved it
        with pytest.raises(Forbidden):
            await client.get_artifact("pushed/app", fixture_digest("docker-v2")).delete()


async def test_prune_on_acr_keeps_the_newest(acr: Acr) -> None:
    acr.server.anonymous_actions = frozenset({"pull", "metadata_read", "delete"})
    dry = await amirror("--plain-http", "--json", "prune", f"{acr.host}/hello/world", "--keep", "3",
                        "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert [m["digest"] for m in json.loads(dry.stdout)["deleted"]] == [D[1], D[0]]
    assert set(acr.server.repositories["hello/world"]["manifests"]) == set(D)
    pruned = await amirror("--plain-http", "prune", f"{acr.host}/hello/world", "--keep", "3")
    assert pruned.returncode == 0, pruned.stderr
    assert set(acr.server.repositories["hello/world"]["manifests"]) == set(D[2:])
    assert set(acr.server.repositories["hello/world"]["tags"]) == {
        "v3",
        "stable",
        "v4",
        "v5",
        "latest",
    }


async def test_a_custom_domain_with_a_credential_uses_the_acr_token_flow(acr: Acr) -> None:
    """Not `*.azurecr.io`, no `acr` option: handing the client an Azure AD credential for the
    endpoint is what says it is ACR, and the token flow is ACR's (AAD token, exchange, POST)."""
    credential = FakeCredential()
    options = RegistryOptions(use_docker_config=False)
    async with ContainerRegistryClient(f"http://{acr.host}", credential, options=options) as c:
        assert await c.is_acr()
        assert [n async for n in c.list_repository_names()] == ["hello/world"]
    assert [e["access_token"] for e in acr.server.exchanges] == credential.issued
    assert {t["grant_type"] for t in acr.server.token_requests} == {"refresh_token"}
