"""Getting and caching registry tokens: Basic, Bearer (GET and POST refresh-token flows)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from mirror.auth.challenge import Challenge, parse_challenges
from mirror.auth.credentials import Credentials
from mirror.errors import (
    MirrorError,
    RateLimited,
    RegistryError,
    ServerError,
    TransportError,
    Unauthorized,
)
from mirror.hosts import host_of, is_loopback, same_site
from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.retry import parse_retry_after
from mirror.support import jsonutil
from mirror.support.httpbody import StallGuard, read_at_most

__all__ = ["Authenticator", "Token", "normalize_scopes"]

#: the monotonic clock tokens expire by; tests replace it to move time on without sleeping
clock: Callable[[], float] = time.monotonic

DEFAULT_EXPIRES_IN = 60
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
CLIENT_ID = "mirror"


@dataclass
class Token:
    """A bearer token (never in repr) and the monotonic time it is renewed at."""

    value: str = field(repr=False)
    expires_at: float


class Authenticator:
    """Answers "which Authorization header for these scopes?" for one registry.

    It learns the registry's challenge from its first 401, then asks for tokens up front
    (one per set of scopes, reused until shortly before expiry). Credentials are sent only to
    the registry itself and to a token realm of the registry's own site (`same_site`) or of
    a host in `trusted_hosts`; a realm over plain HTTP is refused for an HTTPS registry
    (loopback excepted), whatever it would be sent. A token service that cannot answer now
    (cut, 408, 429, 5xx) raises a retryable error that the operation asking retries, as it
    would a registry's; its 401 and 403 are final.
    """

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        session: aiohttp.ClientSession,
        ssl: Any = True,
        *,
        limits: Limits = DEFAULT_LIMITS,
        trusted_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.registry = registry
        self.credentials = credentials or Credentials()
        self.session = session
        self.ssl = ssl
        self.limits = limits
        self.trusted_hosts = frozenset(host_of(h) for h in trusted_hosts)
        #: whether the registry is spoken to over HTTPS (the transport says once it knows)
        self.registry_secure = True
        self.challenge: Challenge | None = None
        self._tokens: dict[frozenset[str], Token] = {}
        self._refresh_token: str | None = self.credentials.identity_token
        self._lock = asyncio.Lock()
        #: number of token requests made (tests read it to prove tokens are reused)

    async def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization header to send up front, or None before any challenge."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            return self._basic() if self.credentials.has_basic else None
        if self.challenge.scheme != "bearer":
            return None
        if self.credentials.registry_token:
            return f"Bearer {_header_safe(self.credentials.registry_token, self.registry)}"
        return f"Bearer {await self._token(normalize_scopes(scopes))}"

    async def unauthorized(self, www_authenticate: str, scopes: tuple[str, ...]) -> str | None:
        """Learn from a 401: return a fresh header to retry with, or None if nothing would help."""
        challenges = parse_challenges(www_authenticate)
        chosen = next((c for c in challenges if c.scheme == "bearer"), None)
        chosen = chosen or next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is None:
            return None
        had = self.challenge
        self.challenge = chosen
        if chosen.scheme == "basic":
            if not self.credentials.has_basic or (had is not None and had.scheme == "basic"):
                return None
            return self._basic()
        wanted = normalize_scopes([*scopes, *chosen.scopes])
        self._tokens.pop(wanted, None)
        if self.credentials.registry_token:
            if had is not None:
                return None
            return f"Bearer {_header_safe(self.credentials.registry_token, self.registry)}"
        return f"Bearer {await self._token(wanted)}"

    def _basic(self) -> str:
        pair = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    async def _token(self, scopes: frozenset[str]) -> str:
        async with self._lock:
            cached = self._tokens.get(scopes)
            if cached is not None and cached.expires_at > clock():
                return cached.value
            token = await self._fetch(scopes)
            self._tokens[scopes] = token
            return token.value

    def checked_realm(self, *, secret: bool) -> str:
        """The challenge's token realm, once it is safe to ask there; Unauthorized when not.

        `secret`: credentials would go there (a password or a refresh token).
        """
        assert self.challenge is not None
        realm = self.challenge.realm
        if not realm:
            raise Unauthorized(f"{self.registry} asked for a bearer token but named no realm")
        url = URL(realm)
        host = url.host or ""
        if url.scheme not in ("http", "https") or not host:
            raise Unauthorized(f"{self.registry} names a token realm that is not a web address")
        if url.scheme != "https" and self.registry_secure and not is_loopback(host):
            raise Unauthorized(
                f"{self.registry} is spoken to over HTTPS but names a token realm over plain "
                f"HTTP ({host}): refusing to ask there"
            )
        where = f"[{host}]" if ":" in host else host
        if url.explicit_port is not None:
            where = f"{where}:{url.explicit_port}"
        trusted = same_site(self.registry, where) or host_of(host) in self.trusted_hosts
        if secret and not trusted:
            raise Unauthorized(
                f"{self.registry} names a token realm on another site ({where}): not sending "
                f"credentials there unless that host is trusted as a token host"
            )
        return realm

    async def _fetch(self, scopes: frozenset[str]) -> Token:
        realm = self.checked_realm(secret=self.credentials.has_basic or bool(self._refresh_token))
        if self._refresh_token:
            try:
                reply = await self._post_refresh(realm, scopes)
            except Unauthorized:
                # a refresh token we were handed may be refused; a password still works
                if not self.credentials.has_basic:
                    raise
                self._refresh_token = None
                reply = None
            if reply is not None:
                return self._parse(reply, realm)
        return self._parse(await self._get(realm, scopes), realm)

    async def _get(self, realm: str, scopes: frozenset[str]) -> dict[str, Any]:
        params: list[tuple[str, str]] = []
        if self.challenge and self.challenge.service:
            params.append(("service", self.challenge.service))
        params.extend(("scope", s) for s in sorted(scopes))
        headers = {"Authorization": self._basic()} if self.credentials.has_basic else {}
        return await self._call("GET", realm, params=params, headers=headers)

    async def _post_refresh(self, realm: str, scopes: frozenset[str]) -> dict[str, Any] | None:
        form = {
            "grant_type": "refresh_token",
            "service": (self.challenge.service if self.challenge else None) or "",
            "client_id": CLIENT_ID,
            "scope": " ".join(sorted(scopes)),
            "refresh_token": self._refresh_token or "",
        }
        try:
            return await self._call("POST", realm, data=form)
        except _NotFoundOrNotAllowed:
            return None

    async def _call(self, method: str, realm: str, **kwargs: Any) -> dict[str, Any]:
        guard = StallGuard(f"token server for {self.registry}", self.limits)
        try:
            resp = await guard.send(
                self.session.request(method, realm, ssl=self.ssl, allow_redirects=False, **kwargs)
            )
            async with resp:
                body = await read_at_most(resp, 1024 * 1024, self.limits, guard.what)
                if method == "POST" and resp.status in (404, 405):
                    raise _NotFoundOrNotAllowed
                if resp.status != 200:
                    raise _refusal(resp, method, self.registry)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"cannot reach token server for {self.registry}: {exc}") from None
        try:
            reply = jsonutil.loads(body)
        except ValueError:
            raise Unauthorized(f"token server for {self.registry} sent no JSON") from None
        if not isinstance(reply, dict):
            raise Unauthorized(f"token server for {self.registry} sent no JSON object")
        return reply

    def _parse(self, reply: dict[str, Any], realm: str) -> Token:
        value = reply.get("token") or reply.get("access_token")
        if not isinstance(value, str) or not value:
            raise MirrorError(f"token server {realm} sent no token for {self.registry}")
        _header_safe(value, self.registry)
        refresh = reply.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self._refresh_token = refresh
        expires_in = reply.get("expires_in")
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            expires_in = DEFAULT_EXPIRES_IN
        # renew a little early so a token never expires mid-request
        return Token(value, clock() + max(1.0, float(expires_in) * 0.9 - 5))


def _refusal(resp: aiohttp.ClientResponse, method: str, registry: str) -> RegistryError:
    """The error for a token service's answer other than 200: 401 and 403 are final (the
    credentials were refused); 408, 429 and 5xx are retried like a registry's, a
    `Retry-After` honoured; anything else is final."""
    host, status = resp.url.host, resp.status
    if status in (401, 403):
        return Unauthorized(
            f"token server {host} refused the credentials for {registry} ({status})",
            status=status,
            method=method,
        )
    said = f"token server {host} answered {status} for {registry}"
    if status == 429 or (status == 503 and resp.headers.get("Retry-After")):
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return RateLimited(said, retry_after=retry_after, status=status, method=method)
    if status == 408 or status >= 500:
        return ServerError(said, status=status, method=method, retryable=True)
    return Unauthorized(said, status=status, method=method)


def normalize_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Scopes as one spelling: per resource (`type:name`, where a name may hold `host:port`)
    the sorted, de-duplicated union of its actions, so `push,pull` and `pull,push` are one
    token's scope."""
    actions: dict[str, set[str]] = {}
    for scope in scopes:
        resource, sep, wanted = scope.rpartition(":")
        if not sep or resource.count(":") < 1:
            actions.setdefault(scope, set())
            continue
        actions.setdefault(resource, set()).update(a for a in wanted.split(",") if a)
    return frozenset(
        f"{resource}:{','.join(sorted(acts))}" if acts else resource
        for resource, acts in actions.items()
    )


def _header_safe(token: str, registry: str) -> str:
    """`token` when it can stand in an Authorization header (visible ASCII, no spaces, no
    CR/LF); Unauthorized otherwise."""
    if not _TOKEN_CHARS.fullmatch(token):
        raise Unauthorized(f"the token for {registry} holds characters a header cannot carry")
    return token


class _NotFoundOrNotAllowed(Exception):
    """The token endpoint does not take POST: use GET."""
