"""Credentials go only where they were given (issue 16, observations 15-16)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import mirror
from mirror.auth.azure import AzureAuthenticator
from mirror.auth.challenge import parse_challenges
from mirror.auth.credentials import Credentials
from mirror.auth.tokens import Authenticator
from mirror.errors import Unauthorized
from mirror.registry import HostSettings, RegistryOptions
from tests.support.bounded import abounded_mirror, bounded_mirror
from tests.support.hostile import HostileRegistry, basic, image
from tests.support.registry import Registry
from tests.support.scripted import address, serve, serving


@pytest.fixture
async def source() -> AsyncIterator[tuple[HostileRegistry, str]]:
    """A registry that asks for Basic credentials and records every Authorization header."""
    registry = HostileRegistry(basic_realm="source")
    image(registry, "v1")
    async with serving(registry.app()) as host:
        yield registry, host


# 15. --creds reaches only the registry it names


def _sync_config(tmp_path: Path, source: str, destination: str) -> Path:
    config = tmp_path / "mirror.toml"
    config.write_text(f'[[jobs]]\nsource = "{source}/app"\ndestination = "{destination}/copy"\n')
    return config


async def test_plain_creds_with_sync_are_a_usage_error(
    source: tuple[HostileRegistry, str], registry: Registry, tmp_path: Path
) -> None:
    hostile, host = source
    config = _sync_config(tmp_path, host, registry.host)
    result = await abounded_mirror("--creds", "alice:s3cret", "sync", str(config))
    assert result.returncode == 2, result.stderr
    assert len(result.lines) == 1
    assert "HOST=USER:PASSWORD" in result.lines[0]
    assert "s3cret" not in result.stderr + result.stdout
    assert hostile.authorizations == []


async def test_host_scoped_creds_never_reach_another_registry(
    source: tuple[HostileRegistry, str], registry: Registry, tmp_path: Path
) -> None:
    hostile, host = source
    config = _sync_config(tmp_path, host, registry.host)
    result = await abounded_mirror("--creds", f"{registry.host}=alice:s3cret", "sync", str(config))
    assert result.returncode == 1  # the source wants credentials it was not given
    assert hostile.authorizations == []
    assert "s3cret" not in result.stderr + result.stdout
    # given for the source, they are sent there (and the copy goes through)
    result = await abounded_mirror("--creds", f"{host}=alice:s3cret", "sync", str(config))
    assert result.returncode == 0, result.stderr
    assert {h for _, h in hostile.authorizations} == {basic("alice", "s3cret")}


def test_plain_creds_with_two_registries_are_a_usage_error() -> None:
    result = bounded_mirror(
        "--creds", "alice:s3cret", "copy", "docker://127.0.0.1:9/a:v1", "docker://127.0.0.1:8/b:v1"
    )
    assert result.returncode == 2
    assert "needs exactly one registry" in result.lines[0]


# 16. token realms: HTTPS for HTTPS registries, credentials only to the registry's own site


@pytest.fixture
async def other_site() -> AsyncIterator[tuple[HostileRegistry, str]]:
    """A token endpoint on another loopback address (another site), recording what it gets."""
    token_server = HostileRegistry()
    async with serving(token_server.app(), host="127.0.0.2") as host:
        yield token_server, host


async def test_credentials_never_go_to_a_realm_on_another_site(
    other_site: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    token_server, token_host = other_site
    registry = HostileRegistry(bearer_realm=f"http://{token_host}/token")
    image(registry, "v1")
    async with serving(registry.app()) as host:
        out = tmp_path / "out"
        args = ("copy", f"docker://{host}/app:v1", f"oci:{out}:v1")
        result = await abounded_mirror("--creds", f"{host}=alice:s3cret", *args)
        assert result.returncode == 1
        assert "token realm on another site (127.0.0.2:" in result.lines[0]
        assert token_server.authorizations == []
        assert token_server.requests == 0
        # the user may trust that host: then the credentials go there, and the copy works
        result = await abounded_mirror(
            "--creds", f"{host}=alice:s3cret", "--token-host", "127.0.0.2", *args
        )
        assert result.returncode == 0, result.stderr
        assert {h for _, h in token_server.authorizations} == {basic("alice", "s3cret")}


def _with_challenge(auth: Authenticator, header: str) -> Authenticator:
    auth.challenge = parse_challenges(header)[0]
    return auth


async def test_an_https_registry_never_asks_a_plain_http_realm() -> None:
    async with aiohttp.ClientSession() as session:
        auth = _with_challenge(
            Authenticator("registry.example.com", Credentials("alice", "s3cret"), session),
            'Bearer realm="http://auth.example.com/token",service="x"',
        )
        with pytest.raises(Unauthorized, match="plain HTTP"):
            auth.checked_realm(secret=False)
        # the registry's own site over HTTPS is fine; another site only without secrets
        auth = _with_challenge(auth, 'Bearer realm="https://auth.example.com/token"')
        assert auth.checked_realm(secret=True) == "https://auth.example.com/token"
        auth = _with_challenge(auth, 'Bearer realm="https://auth.evil.com/token"')
        assert auth.checked_realm(secret=False) == "https://auth.evil.com/token"
        with pytest.raises(Unauthorized, match="another site"):
            auth.checked_realm(secret=True)


class _NeverAsked:
    """An Azure credential that fails the test if anyone asks it for a token."""

    asked = 0

    def get_token(self, *scopes: str) -> object:
        self.asked += 1
        raise AssertionError("the Azure AD token was asked for")


async def test_the_azure_ad_token_goes_only_to_the_registry_itself() -> None:
    app = web.Application()
    hits: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"refresh_token": "r", "access_token": "a"})

    app.router.add_route("*", "/{tail:.*}", anything)
    runner = await serve(app, host="127.0.0.2")
    credential = _NeverAsked()
    try:
        async with aiohttp.ClientSession() as session:
            auth = AzureAuthenticator("myreg.azurecr.io", credential, session)
            auth.registry_secure = False
            header = f'Bearer realm="http://{address(runner)}/oauth2/token",service="x"'
            with pytest.raises(Unauthorized, match=r"another (site|host)"):
                await auth.unauthorized(header, ("repository:app:pull",))
        assert credential.asked == 0
        assert hits == []
    finally:
        await runner.cleanup()


# issue 25, item 8: sibling sites never receive the credentials


@pytest.fixture
async def token_service() -> AsyncIterator[tuple[HostileRegistry, int]]:
    """A token endpoint on another port of the registries' loopback address."""
    token_server = HostileRegistry()
    async with serving(token_server.app()) as host:
        yield token_server, int(host.rsplit(":", 1)[1])


async def test_a_realm_on_another_port_of_the_registry_s_address_gets_no_credentials(
    token_service: tuple[HostileRegistry, int], tmp_path: Path
) -> None:
    token_server, port = token_service
    registry = HostileRegistry(bearer_realm=f"http://127.0.0.1:{port}/token")
    image(registry, "v1")
    async with serving(registry.app()) as host:
        args = ("copy", f"docker://{host}/app:v1", f"oci:{tmp_path / 'out'}:v1")
        result = await abounded_mirror("--creds", f"{host}=alice:s3cret", *args)
        assert result.returncode == 1, result.stderr
        assert f"token realm on another site (127.0.0.1:{port})" in result.lines[0]
        assert token_server.requests == 0
        assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("registry_name", "realm_name"),
    [("corp.co.uk", "evil.co.uk"), ("myreg.azurecr.io", "attacker.azurecr.io")],
)
async def test_a_realm_on_a_sibling_site_gets_no_credentials(
    token_service: tuple[HostileRegistry, int],
    monkeypatch: pytest.MonkeyPatch,
    registry_name: str,
    realm_name: str,
) -> None:
    token_server, token_port = token_service
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def to_loopback(host: Any, *args: Any, **kwargs: Any) -> Any:
        """The test's resolver: both names are on this machine's loopback address."""
        named = host in (registry_name, realm_name)
        return await resolve("127.0.0.1" if named else host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", to_loopback)
    registry = HostileRegistry(bearer_realm=f"http://{realm_name}:{token_port}/token")
    image(registry, "v1")
    async with serving(registry.app()) as address:
        name = f"{registry_name}:{address.rsplit(':', 1)[1]}"
        options = RegistryOptions(
            hosts={name: HostSettings(plain_http=True, credentials=Credentials("al", "s3cret"))},
            use_docker_config=False,
        )
        with pytest.raises(Unauthorized, match=f"token realm on another site \\({realm_name}"):
            await mirror.inspect(f"docker://{name}/app:v1", options=options)
        assert registry.requests > 0  # the registry itself was reached, by its name
    assert token_server.requests == 0
