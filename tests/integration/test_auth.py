"""Basic auth (htpasswd) and bearer token auth against the real registry."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web

import mirror
from fixtures.generate import make_big_image
from mirror.auth import Credentials
from mirror.auth.challenge import parse_challenges
from mirror.auth.tokens import Authenticator
from mirror.errors import Unauthorized
from mirror.registry import HostSettings, RegistryOptions
from tests.support.registry import Registry, free_port, start_registry
from tests.support.scripted import (
    FaultProxy,
    SigningKey,
    TokenServer,
    serve,
    serving,
    token_auth_config,
)
from tests.support.tools import FIXTURES, fixture_digest
from tests.support.tools import mirror as run_mirror

MiB = 1024 * 1024
USER, PASSWORD = "alice", "s3cret:with-colon"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that demands Basic auth from an htpasswd file."""
    work = tmp_path_factory.mktemp("basic")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (work / "htpasswd").write_text(f"{USER}:{hashed}\n")
    extra = f"auth:\n  htpasswd:\n    realm: mirror-test\n    path: {work / 'htpasswd'}\n"
    reg = start_registry(work / "reg", extra=extra)
    yield reg
    reg.stop()


#: the token service runs on another port of the registry's loopback address: another site,
#: so the user trusts it as a token host (as a company would with --token-host)
TOKEN_HOSTS = frozenset({"127.0.0.1"})


def _options(creds: Credentials | None) -> RegistryOptions:
    return RegistryOptions(
        defaults=HostSettings(credentials=creds), use_docker_config=False, token_hosts=TOKEN_HOSTS
    )


async def test_basic_auth_push_pull_and_catalog(basic_registry: Registry, tmp_path: Path) -> None:
    creds = Credentials(USER, PASSWORD)
    target = f"docker://{basic_registry.host}/basic/app:v1"
    pushed = await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", target, options=_options(creds))
    pulled = await mirror.copy(target, f"oci:{tmp_path / 'l'}:v1", options=_options(creds))
    assert pulled.digest == pushed.digest
    assert await mirror.list_repositories(basic_registry.host, options=_options(creds)) == [
        "basic/app"
    ]
    with pytest.raises(Unauthorized):
        await mirror.copy(target, f"oci:{tmp_path / 'm'}:v1", options=_options(None))
    with pytest.raises(Unauthorized):
        await mirror.inspect(target, options=_options(Credentials(USER, "wrong")))


def test_basic_auth_from_cli_flag_and_docker_config(
    basic_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = f"{basic_registry.host}/basic/cli:v1"
    source = f"oci:{FIXTURES / 'docker-v2'}:v1"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-config"))
    denied = run_mirror("copy", source, f"docker://{target}")
    assert denied.returncode == 1
    assert denied.stderr.count("\n") == 1
    assert "401" in denied.stderr
    assert PASSWORD not in denied.stderr
    ok = run_mirror("-vv", "--creds", f"{USER}:{PASSWORD}", "copy", source, f"docker://{target}")
    assert ok.returncode == 0, ok.stderr
    assert "DEBUG: PUT" in ok.stderr  # requests are logged at -vv ...
    assert PASSWORD not in ok.stderr  # ... but never a secret
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in ok.stderr
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config_dir / "config.json").write_text(
        json.dumps({"auths": {f"http://{basic_registry.host}": {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    listed = run_mirror("--json", "tags", target.rsplit(":", 1)[0])
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == ["v1"]


@pytest.fixture
async def token_setup(tmp_path: Path) -> AsyncIterator[tuple[Registry, TokenServer]]:
    """A registry in `auth: token` mode and our token server (started on its announced port)."""
    key = SigningKey.create()
    bundle = key.write_bundle(tmp_path / "root.pem")
    port = free_port()
    server = TokenServer(key, users={USER: PASSWORD}, refresh_tokens={"refresh-abc"})
    runner = await serve(server.app(), port=port)
    reg = start_registry(
        tmp_path / "reg", extra=token_auth_config(f"http://127.0.0.1:{port}/token", bundle)
    )
    try:
        yield reg, server
    finally:
        reg.stop()
        await runner.cleanup()


async def test_bearer_scopes_are_asked_for_and_honoured(
    token_setup: tuple[Registry, TokenServer], tmp_path: Path
) -> None:
    reg, server = token_setup
    opts = _options(Credentials(USER, PASSWORD))
    target = f"docker://{reg.host}/team/app:v1"
    await mirror.copy(f"oci:{FIXTURES / 'multi-arch'}:v1", target, options=opts)
    assert "repository:team/app:pull,push" in server.scopes_seen()
    push_requests = len(server.requests)
    assert push_requests <= 3, server.requests  # tokens are reused across the many requests

    server.requests.clear()
    pulled = await mirror.copy(target, f"oci:{tmp_path / 'l'}:v1", options=opts)
    assert pulled.blobs_copied == 5
    assert server.scopes_seen() == ["repository:team/app:pull"]
    assert all(r["basic"] for r in server.requests)

    server.requests.clear()
    assert await mirror.list_repositories(reg.host, options=opts) == ["team/app"]
    assert server.scopes_seen() == ["registry:catalog:*"]

    # a token without push rights is refused by the registry: one clear error
    server.denied_actions = {"push"}
    with pytest.raises(Unauthorized):
        await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{reg.host}/team/other:v1", options=opts
        )


async def test_refresh_token_uses_post_and_falls_back_to_get(
    token_setup: tuple[Registry, TokenServer],
) -> None:
    reg, server = token_setup
    target = f"docker://{reg.host}/team/app:v1"
    await mirror.copy(
        f"oci:{FIXTURES / 'oci-single'}:v1", target, options=_options(Credentials(USER, PASSWORD))
    )
    server.requests.clear()
    identity = _options(Credentials(identity_token="refresh-abc"))
    info = await mirror.inspect(target, options=identity)
    assert info.digest == fixture_digest("oci-single")
    assert [r["method"] for r in server.requests] == ["POST"]
    assert server.requests[0]["grant"] == "refresh_token"
    assert server.requests[0]["refresh_token"] == "refresh-abc"  # the identity token is used

    # a token server without POST: GET carries no password here, so it is anonymous...
    server.requests.clear()
    server.accept_post = False
    with pytest.raises(Unauthorized):
        await mirror.inspect(target, options=identity)
    assert [(r["method"], r["basic"]) for r in server.requests] == [("POST", False), ("GET", False)]
    # ...and works only where anonymous pull is allowed
    server.requests.clear()
    server.anonymous_pull = True
    info = await mirror.inspect(target, options=identity)
    assert info.digest == fixture_digest("oci-single")
    assert [r["method"] for r in server.requests] == ["POST", "GET"]


async def test_anonymous_pull_with_bearer(token_setup: tuple[Registry, TokenServer]) -> None:
    reg, server = token_setup
    target = f"docker://{reg.host}/public/app:v1"
    await mirror.copy(
        f"oci:{FIXTURES / 'oci-single'}:v1", target, options=_options(Credentials(USER, PASSWORD))
    )
    server.anonymous_pull = True
    server.requests.clear()
    assert await mirror.list_tags(target, options=_options(None)) == ["v1"]
    assert server.requests[0]["basic"] is False


async def test_a_scope_spelled_another_way_renews_the_same_cached_token() -> None:
    """Issue 11: a challenge spelling `push,pull` renews the token cached for `pull,push`."""
    issued: list[list[str]] = []

    async def token(request: web.Request) -> web.Response:
        issued.append(request.query.getall("scope", []))
        return web.json_response({"token": f"token-{len(issued)}", "expires_in": 300})

    app = web.Application()
    app.router.add_get("/token", token)
    async with serving(app) as host, aiohttp.ClientSession() as session:
        auth = Authenticator("127.0.0.1:1", None, session)
        challenge = f'Bearer realm="http://{host}/token",service="registry"'
        auth.challenge = parse_challenges(challenge)[0]
        first = await auth.header(("repository:team/app:pull,push",))
        fresh = await auth.unauthorized(
            challenge + ',scope="repository:team/app:push,pull"',
            ("repository:team/app:pull,push",),
        )
        assert fresh != first
        assert await auth.header(("repository:team/app:pull,push",)) == fresh
        assert await auth.header(("repository:team/app:push,pull",)) == fresh
    assert issued == [["repository:team/app:pull,push"], ["repository:team/app:pull,push"]]


async def test_a_refused_mount_becomes_an_upload_and_scopes_are_exact(
    token_setup: tuple[Registry, TokenServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: a token service that keeps repositories apart refuses the mount (401); the
    blob is uploaded instead. The scopes asked are exactly: pull on the source, pull and push
    on the destination, and pull on the mount source together with push on the destination."""
    reg, server = token_setup
    opts = _options(Credentials(USER, PASSWORD))
    source = f"docker://{reg.host}/team/src:v1"
    await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", source, options=opts)
    server.cross_repository_pull = False
    server.requests.clear()
    caplog.set_level(logging.INFO, logger="mirror")
    result = await mirror.copy(source, f"docker://{reg.host}/team/dst:v1", options=opts)
    assert (result.blobs_mounted, result.blobs_copied) == (0, 3)
    assert (
        sum("declined (" in r.getMessage() and "401" in r.getMessage() for r in caplog.records) == 3
    )
    asked = {frozenset(r["scopes"]) for r in server.requests}
    assert asked == {
        frozenset({"repository:team/src:pull"}),
        frozenset({"repository:team/dst:pull,push"}),
        frozenset({"repository:team/dst:pull,push", "repository:team/src:pull"}),
    }
    assert (await mirror.inspect(f"docker://{reg.host}/team/dst:v1", options=opts)).digest == (
        fixture_digest("oci-single")
    )


async def test_a_token_that_dies_mid_upload_is_renewed_and_the_upload_goes_on(
    token_setup: tuple[Registry, TokenServer], tmp_path: Path
) -> None:
    """Issue 11: a slow chunked push outlives several tokens; each 401 gets one fresh token
    and the upload goes on from where the registry says it stands."""
    reg, server = token_setup
    server.lifetime = 1.5  # the reply still says expires_in=300: the client learns by a 401
    source = tmp_path / "src"
    make_big_image(source, "big", layers=1, layer_size=12 * MiB, seed=21)
    # chunks grow (1, 1, 2, 4, 4 MiB): 5 PATCHes held 0.6 s each outlive two tokens, and a
    # renewed token lives well past the one PATCH it is first sent with
    proxy = FaultProxy(reg.host, rate=0.0, patch_delay=0.6, keep_authorization=True)
    async with serving(proxy.app()) as host:
        options = RegistryOptions(
            use_docker_config=False,
            credentials={host: Credentials(USER, PASSWORD)},
            token_hosts=TOKEN_HOSTS,
            chunk_size=MiB,
            chunked_upload_threshold=2 * MiB,
            state_dir=tmp_path / "state",
        )
        target = f"docker://{host}/team/slow:v1"
        result = await mirror.copy(f"oci:{source}:big", target, options=options)
        server.lifetime = None
        info = await mirror.inspect(target, options=options)
    assert result.blobs_copied == 2
    assert info.digest == result.digest
    renewals = [r for r in server.requests if "repository:team/slow:pull,push" in r["scopes"]]
    assert len(renewals) >= 3  # the token was renewed at least twice along the way
    # each renewal cost at most the one chunk that the registry refused (chunks grow from
    # 1 MiB with what went through: 1, 1, 2, 4, 4 MiB for this layer)
    assert result.bytes_copied <= 12 * MiB + info.config["size"] + len(renewals) * 4 * MiB


async def test_a_second_401_in_a_row_is_refused_naming_the_scope(
    token_setup: tuple[Registry, TokenServer],
) -> None:
    reg, server = token_setup
    server.denied_actions = {"push"}
    with pytest.raises(Unauthorized) as refused:
        await mirror.copy(
            f"oci:{FIXTURES / 'oci-single'}:v1",
            f"docker://{reg.host}/team/denied:v1",
            options=_options(Credentials(USER, PASSWORD)),
        )
    message = str(refused.value)
    assert reg.host in message
    assert "repository:team/denied:pull,push" in message
    assert "refused" in message


async def test_per_repository_grants_from_an_access_list(
    token_setup: tuple[Registry, TokenServer],
) -> None:
    """The token server grants per repository from an access list, as company setups do:
    alice may push under team/ and only pull under base/; the registry enforces each."""
    reg, server = token_setup
    opts = _options(Credentials(USER, PASSWORD))
    await mirror.copy(
        f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{reg.host}/base/os:v1", options=opts
    )
    server.access = {USER: {"team/*": {"pull", "push"}, "base/*": {"pull"}}}
    copied = await mirror.copy(
        f"docker://{reg.host}/base/os:v1", f"docker://{reg.host}/team/app:v1", options=opts
    )
    assert copied.blobs_mounted == 3  # pull on base/os and push on team/app: a mount
    with pytest.raises(Unauthorized, match="repository:base/copy:pull,push"):
        await mirror.copy(
            f"docker://{reg.host}/team/app:v1", f"docker://{reg.host}/base/copy:v1", options=opts
        )
    assert "repository:base/copy:pull,push" in server.scopes_seen()


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (429, "1"), (502, None)])
async def test_a_token_service_in_trouble_once_is_asked_again(
    token_setup: tuple[Registry, TokenServer], status: int, retry_after: str | None
) -> None:
    """A token service's 5xx or 429 is retried like any registry answer (its Retry-After
    honoured): one bad answer does not fail the copy."""
    reg, server = token_setup
    server.outages, server.outage_retry_after = [status], retry_after
    started = time.monotonic()
    result = await mirror.copy(
        f"oci:{FIXTURES / 'oci-single'}:v1",
        f"docker://{reg.host}/team/outage:v1",
        options=_options(Credentials(USER, PASSWORD)),
    )
    assert result.digest == fixture_digest("oci-single")
    assert [r.get("outage", False) for r in server.requests[:2]] == [True, False]
    if retry_after is not None:
        assert time.monotonic() - started >= float(retry_after)  # its Retry-After waited


@pytest.mark.parametrize("status", [401, 403])
async def test_a_token_service_that_refuses_is_asked_once(
    token_setup: tuple[Registry, TokenServer], status: int
) -> None:
    """401 and 403 from the token service are its answer: final, never retried."""
    reg, server = token_setup
    server.outages = [status] * 10
    with pytest.raises(Unauthorized, match=f"refused the credentials .*\\({status}\\)"):
        await mirror.inspect(
            f"docker://{reg.host}/team/refused:v1", options=_options(Credentials(USER, PASSWORD))
        )
    assert len(server.requests) == 1, server.requests
