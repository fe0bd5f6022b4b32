"""Scripted aiohttp servers, only for what a real registry cannot show.

- TokenServer: a Docker token-auth server issuing signed JWTs for the real registry.
- StorageServer: a second loopback host (127.0.0.2) that serves redirected blobs and records
  the headers it was sent.
- ScriptedProxy: sits in front of the real registry; can demand Basic auth, redirect blob
  GETs to the storage host, or turn hostile (flip a byte of blobs, lie about Content-Type).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import fnmatch
import math
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from yarl import URL

from tests.support.registry import free_port

HOP_BY_HOP = {"transfer-encoding", "content-length", "connection", "content-encoding", "host"}


def upstream_request(
    session: aiohttp.ClientSession,
    request: web.Request,
    upstream: str,
    body: bytes,
    dropped: set[str],
) -> Any:
    """The same request sent on to `upstream`, less hop-by-hop and `dropped` headers."""
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in HOP_BY_HOP and k.lower() not in dropped
    }
    return session.request(
        request.method,
        f"http://{upstream}{request.path_qs}",
        headers=headers,
        data=body,
        allow_redirects=False,
    )


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
    """Start `app` on host:port (0: a free one); the bound port is in runner.addresses."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port or free_port(host))
    await site.start()
    return runner


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """`app` listening on a free port of `host` for the block; yields its host:port."""
    runner = await serve(app, host)
    try:
        yield address(runner)
    finally:
        await runner.cleanup()


def address(runner: web.AppRunner) -> str:
    """host:port a runner listens on."""
    host, port = runner.addresses[0][:2]
    return f"{host}:{port}"


# -- token server ------------------------------------------------------------------------


@dataclass
class SigningKey:
    """An RSA key and a self-signed certificate the registry trusts (rootcertbundle)."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> SigningKey:
        """A fresh key and certificate."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mirror-test-token-issuer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def write_bundle(self, path: Path) -> Path:
        """Write the certificate as PEM for the registry's rootcertbundle."""
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT with the certificate in its x5c header, as distribution verifies it."""
        der = self.cert.public_bytes(serialization.Encoding.DER)
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return jwt.encode(
            claims, pem, algorithm="RS256", headers={"x5c": [base64.b64encode(der).decode()]}
        )


SERVICE = "mirror-test-registry"
ISSUER = "mirror-test-issuer"


@dataclass
class TokenServer:
    """Grants the scopes asked for (minus `denied_actions`) to `users`; records every request."""

    key: SigningKey
    users: dict[str, str] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    denied_actions: set[str] = field(default_factory=set)
    accept_post: bool = True
    anonymous_pull: bool = False
    #: per user, repository globs and the actions granted there (None: every action asked)
    access: dict[str, dict[str, set[str]]] | None = None
    #: False: a token that pushes to one repository gets no pull on another (a token service
    #: that keeps projects apart; such a registry refuses cross-repository mounts with 401)
    cross_repository_pull: bool = True
    expires_in: int = 300
    #: when set, tokens really die this many seconds after issue (distribution accepts a
    #: token up to 60 s past its `exp`, so `exp` is set that much earlier), while the reply
    #: still announces `expires_in`: clients meet expiry as a 401 mid-transfer
    lifetime: float | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: statuses answered, one per request in order, before any token is granted (a token
    #: service in trouble: 503, or 429 with `Retry-After: outage_retry_after`)
    outages: list[int] = field(default_factory=list)
    outage_retry_after: str | None = None
    _refresh_owners: dict[str, str] = field(default_factory=dict)

    def app(self) -> web.Application:
        """The aiohttp application serving /token."""
        app = web.Application()
        app.router.add_route("*", "/token", self.handle)
        return app

    def scopes_seen(self) -> list[str]:
        """Every scope asked for, in order."""
        return [s for r in self.requests for s in r["scopes"]]

    async def handle(self, request: web.Request) -> web.Response:
        """GET with Basic auth, or POST with a refresh token (after any outage)."""
        if self.outages:
            self.requests.append({"method": request.method, "scopes": [], "outage": True})
            headers = {"Retry-After": self.outage_retry_after} if self.outage_retry_after else {}
            return web.Response(status=self.outages.pop(0), headers=headers, text="unavailable")
        if request.method == "POST":
            form = await request.post()
            scopes = str(form.get("scope", "")).split()
            self.requests.append(
                {
                    "method": "POST",
                    "scopes": scopes,
                    "grant": form.get("grant_type"),
                    "refresh_token": form.get("refresh_token"),
                    "basic": False,
                }
            )
            if not self.accept_post:
                return web.Response(status=404)
            if form.get("refresh_token") not in self.refresh_tokens:
                return web.Response(status=401)
            owner = self._refresh_owners.get(str(form.get("refresh_token")), "refresh-user")
            return self._grant(owner, scopes)
        scopes = request.query.getall("scope", [])
        user = self._basic_user(request.headers.get("Authorization"))
        self.requests.append({"method": "GET", "scopes": scopes, "basic": user is not None})
        if user is None and not self.anonymous_pull:
            return web.Response(status=401)
        if user is None:
            scopes = [s for s in scopes if s.endswith(":pull")]
        return self._grant(user or "anonymous", scopes)

    def _basic_user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else None

    def _grant(self, subject: str, scopes: list[str]) -> web.Response:
        access = []
        pushing = {s.rpartition(":")[0] for s in scopes if "push" in s.rpartition(":")[2]}
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if a and a not in self.denied_actions]
            if self.access is not None:
                rules = self.access.get(subject, {})
                granted = set().union(
                    *(acts for glob, acts in rules.items() if fnmatch.fnmatchcase(name, glob))
                )
                allowed = [a for a in allowed if a in granted or "*" in granted]
            if not self.cross_repository_pull and pushing - {f"{kind}:{name}"}:
                allowed = [a for a in allowed if a != "pull" or f"{kind}:{name}" in pushing]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + self.expires_in
            if self.lifetime is None
            else math.ceil(now + self.lifetime - 60),
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = self.key.sign(claims)
        refresh = f"refresh-{secrets.token_hex(4)}"
        self.refresh_tokens.add(refresh)
        self._refresh_owners[refresh] = subject
        return web.json_response(
            {"token": token, "expires_in": self.expires_in, "refresh_token": refresh}
        )


def token_auth_config(realm: str, bundle: Path) -> str:
    """The registry config section for token auth with our token server."""
    return (
        "auth:\n  token:\n"
        f"    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        f"    rootcertbundle: {bundle}\n"
    )


# -- storage host and proxy ---------------------------------------------------------------


@dataclass
class StorageServer:
    """Serves blobs fetched from the real registry at /blob/<repo>/<digest>; logs headers."""

    upstream: str
    seen: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_get("/blob/{repo:.*}/{digest}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request headers, then answer with the blob bytes."""
        self.seen.append(dict(request.headers))
        repo, digest = request.match_info["repo"], request.match_info["digest"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{self.upstream}/v2/{repo}/blobs/{digest}") as reply,
        ):
            body = await reply.read()
            return web.Response(status=reply.status, body=body)


@dataclass
class ScriptedProxy:
    """Forwards to the real registry at `upstream`, with the behaviours switched on below."""

    upstream: str
    basic_user: tuple[str, str] | None = None
    redirect_blobs_to: str | None = None
    flip_blob_byte: bool = False
    manifest_content_type: str | None = None
    manifest_body: bytes | None = None
    manifest_digest_header: str | None = None
    relative_locations: bool = False
    trickle_manifests: bool = False
    ignore_range: bool = False
    chunk_min_length: int | None = None
    patch_sizes: list[int] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    locations_sent: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Check auth, maybe redirect, forward, maybe corrupt."""
        auth = request.headers.get("Authorization", "")
        self.authorizations.append(auth)
        if self.basic_user is not None:
            user, password = self.basic_user
            wanted = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if auth != wanted:
                return web.Response(
                    status=401, headers={"WWW-Authenticate": 'Basic realm="scripted"'}
                )
        path = request.path
        is_blob_get = request.method == "GET" and "/blobs/sha256:" in path
        if is_blob_get and self.redirect_blobs_to:
            repo, _, digest = path.removeprefix("/v2/").partition("/blobs/")
            location = f"http://{self.redirect_blobs_to}/blob/{repo}/{digest}?sig=opaque"
            return web.Response(status=307, headers={"Location": location})
        status, headers, body = await self._forward(request)
        if is_blob_get and self.flip_blob_byte and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if request.method == "PATCH":
            self.patch_sizes.append(int(request.headers.get("Content-Length", "0")))
        if request.method == "POST" and status == 202 and self.chunk_min_length:
            headers["OCI-Chunk-Min-Length"] = str(self.chunk_min_length)
        is_manifest_get = "/manifests/" in path and request.method == "GET" and status == 200
        if is_manifest_get and self.manifest_content_type:
            headers["Content-Type"] = self.manifest_content_type
        if is_manifest_get and self.manifest_body is not None:
            body = self.manifest_body
        if is_manifest_get and self.manifest_digest_header:
            headers["Docker-Content-Digest"] = self.manifest_digest_header
        if is_manifest_get and self.trickle_manifests:
            response = web.StreamResponse(status=status, headers=headers)
            response.content_length = len(body)
            await response.prepare(request)
            for start in range(0, len(body), 97):
                await response.write(body[start : start + 97])
                await asyncio.sleep(0.002)
            await response.write_eof()
            return response
        if self.relative_locations and "Location" in headers:
            absolute = URL(headers["Location"])
            headers["Location"] = absolute.raw_path_qs
            self.locations_sent.append(headers["Location"])
        if request.method == "HEAD" and "X-Head-Length" in headers:
            headers["Content-Length"] = headers.pop("X-Head-Length")
            head = web.StreamResponse(status=status, headers=headers)
            await head.prepare(request)
            return head
        return web.Response(status=status, headers=headers, body=body)

    async def _forward(self, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        dropped = {"authorization", "range"} if self.ignore_range else {"authorization"}
        data = await request.read()
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            upstream_request(session, request, self.upstream, data, dropped) as reply,
        ):
            body = await reply.read()
            out = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
            if request.method == "HEAD" and "Content-Length" in reply.headers:
                out["X-Head-Length"] = reply.headers["Content-Length"]
            return reply.status, out, body


# -- fault injection ----------------------------------------------------------------------

FAULTS = ("reset", "500", "502", "503", "429", "after-500")


@dataclass
class FaultProxy:
    """In front of the real registry: on `rate` of requests, one fault from FAULTS.

    - reset: the connection is cut (halfway through a reply body, or before any reply);
    - 500/502/503: an error status instead of forwarding;
    - 429: rate limited with `Retry-After: 1`;
    - after-500: the request is forwarded (the registry acts on it) but 500 is answered;
    - after-reset (not drawn by default): the request is forwarded, then the connection is cut
      before any answer.

    Upload bodies can also be damaged on the way in (`damage_uploads_on`), as a middlebox
    might. Locations are made relative so uploads come back through the proxy. Counts the blob
    bytes sent to clients (`bytes_out`) and the upload bytes received (`bytes_in`).
    """

    upstream: str
    rate: float = 0.2
    seed: int = 1
    #: drawn from; also "after-504" (not drawn by default): forwarded, then 504 answered, as
    #: a front end whose wait for the registry ran out (the client never learns the outcome)
    faults: tuple[str, ...] = FAULTS
    bytes_out: int = 0
    bytes_in: int = 0
    #: upload bytes (PUT, PATCH) read from clients, counted as they arrive: a body cut short
    #: counts what came of it (`bytes_in` counts whole bodies, as the registry gets them)
    bytes_arrived: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    #: each injected fault with the method it hit
    injected_on: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0
    #: hold the first PATCH whose range starts at or after this offset before reading its
    #: body (as a buffering front end would), and set `held`: a test then cuts the client
    hold_patch_at: int | None = None
    held: asyncio.Event = field(default_factory=asyncio.Event)
    #: stop passing bytes on once this many have moved (blob bytes sent, `bytes_out`, or
    #: upload bytes arrived, `bytes_arrived`): set `held` and hold every transfer at its next
    #: step, the moment a test kills the client; `let_go` then drops them, forwarding nothing
    #: more, as a front end does when its client is gone (None: never)
    hold_after_bytes: int | None = None
    let_go: asyncio.Event = field(default_factory=asyncio.Event)
    #: seconds each PATCH waits before it is forwarded (a slow link)
    patch_delay: float = 0.0
    #: seconds each blob GET waits before it is forwarded, after setting `blob_asked`
    blob_get_delay: float = 0.0
    blob_asked: asyncio.Event = field(default_factory=asyncio.Event)
    #: seconds every request waits before it is forwarded (a registry far away)
    request_delay: float = 0.0
    #: the most requests of each kind (`HEAD manifest`, `GET blob`, …) in flight at once
    peak_in_flight: dict[str, int] = field(default_factory=dict)
    #: forward the client's Authorization (for a registry that checks tokens itself)
    keep_authorization: bool = False
    #: every (method, path) received
    seen: list[tuple[str, str]] = field(default_factory=list)
    #: every (method, path, query string) received
    seen_queries: list[tuple[str, str, str]] = field(default_factory=list)
    #: faults only for requests whose method and path (`GET /v2/…`) match this pattern
    fault_on: str = ""
    #: inject no more than this many faults (None: no bound)
    faults_at_most: int | None = None
    #: called with each request before it is forwarded (a test changes the registry there)
    before_forward: Callable[[web.Request], None] | None = None
    #: a reply given instead of forwarding (None: forward), as a front end might answer
    answer_instead: Callable[[web.Request], web.Response | None] | None = None
    #: headers added to each forwarded reply (a front end's rate-limit headers, say)
    reply_headers: Callable[[web.Request], dict[str, str]] | None = None
    #: flip one byte of the body of uploads (PATCH, PUT) whose `METHOD /path?query` matches
    #: this pattern ("": none) on the way in, as a damaging middlebox would ...
    damage_uploads_on: str = ""
    #: ... this many of them, first ones first (-1: every one)
    damage_uploads: int = 1
    #: the upload bodies damaged so far
    damaged: int = 0

    def __post_init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._seen_keys: dict[tuple[str, str, str], int] = {}
        self._dropped = set() if self.keep_authorization else {"authorization"}

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _pick(self, request: web.Request) -> str | None:
        """The fault for this request, drawn from the seed and what the request is (its
        method, path less upload ids, range, and how often it came before), not from arrival
        order: concurrent requests get the same faults in every run of a seed."""
        if self.fault_on and not re.search(self.fault_on, f"{request.method} {request.path}"):
            return None
        if self.faults_at_most is not None and len(self.injected_on) >= self.faults_at_most:
            return None
        path = re.sub(r"/uploads/[^/?]+", "/uploads/", request.path)
        key = (request.method, path, request.headers.get("Content-Range", ""))
        self._seen_keys[key] = self._seen_keys.get(key, 0) + 1
        rng = random.Random(f"{self.seed}|{key}|{self._seen_keys[key]}")
        if rng.random() >= self.rate:
            return None
        fault = rng.choice(self.faults)
        self.injected[fault] = self.injected.get(fault, 0) + 1
        self.injected_on.append((request.method, fault))
        return fault

    def _damaged(self, request: web.Request, body: bytes) -> bytes:
        """`body` with its middle byte flipped when it is an upload body to damage."""
        wanted = self.damage_uploads < 0 or self.damaged < self.damage_uploads
        if not (body and wanted and self.damage_uploads_on and request.method in ("PATCH", "PUT")):
            return body
        if not re.search(self.damage_uploads_on, f"{request.method} {request.path_qs}"):
            return body
        self.damaged += 1
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Count what is in flight, then maybe fail, else forward."""
        kind = f"{request.method} {'blob' if '/blobs/sha256:' in request.path else 'other'}"
        if "/manifests/" in request.path:
            kind = f"{request.method} manifest"
        self._in_flight[kind] = self._in_flight.get(kind, 0) + 1
        self.peak_in_flight[kind] = max(self.peak_in_flight.get(kind, 0), self._in_flight[kind])
        try:
            await asyncio.sleep(self.request_delay)
            return await self._handle(request)
        finally:
            self._in_flight[kind] -= 1

    async def _read_body(self, request: web.Request) -> bytes:
        """The whole request body (as a buffering front end takes it before forwarding),
        upload bytes counted in `bytes_arrived` as they come."""
        parts = []
        async for part in request.content.iter_any():
            parts.append(part)
            if request.method in ("PUT", "PATCH"):
                self.bytes_arrived += len(part)
                await self._hold_past(request, self.bytes_arrived)
        return b"".join(parts)

    async def _hold_past(self, request: web.Request, moved: int) -> None:
        """Once `moved` reaches `hold_after_bytes` (or another transfer's did): hold until
        `let_go`, then drop the connection."""
        if self.hold_after_bytes is None or self.let_go.is_set():
            return
        if moved < self.hold_after_bytes and not self.held.is_set():
            return
        self.held.set()
        await self.let_go.wait()
        if request.transport is not None:
            request.transport.close()
        raise ConnectionResetError("held, then let go: the client is gone")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Maybe fail, else forward (streaming reply bodies)."""
        self.requests += 1
        self.seen.append((request.method, request.path))
        self.seen_queries.append((request.method, request.path, request.query_string))
        fault = self._pick(request)
        start = request.headers.get("Content-Range", "").partition("-")[0]
        hold = self.hold_patch_at
        if (
            request.method == "PATCH"
            and hold is not None
            and start.isdigit()
            and int(start) >= hold
        ):
            self.hold_patch_at = None
            self.held.set()
            await asyncio.sleep(2)
        body = self._damaged(request, await self._read_body(request))
        if self.before_forward is not None:
            self.before_forward(request)
        if self.answer_instead is not None and (instead := self.answer_instead(request)):
            return instead
        if request.method == "PATCH" and self.patch_delay:
            await asyncio.sleep(self.patch_delay)
        if request.method == "GET" and "/blobs/sha256:" in request.path:
            self.blob_asked.set()
            await asyncio.sleep(self.blob_get_delay)
        if request.method in ("PUT", "PATCH"):
            self.bytes_in += len(body)
        if fault in ("500", "502", "503"):
            return web.Response(status=int(fault), text="injected")
        if fault == "429":
            return web.Response(status=429, headers={"Retry-After": "1"})
        if fault == "reset" and request.method != "GET":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            upstream_request(session, request, self.upstream, body, self._dropped) as reply,
        ):
            out = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
            if self.reply_headers is not None:
                out.update(self.reply_headers(request))
            if "Location" in out:
                out["Location"] = URL(out["Location"]).raw_path_qs
            if fault == "after-504":
                await reply.read()
                return web.Response(status=504, text="the registry did not answer in time")
            if fault == "after-500":
                await reply.read()
                return web.Response(status=500, text="injected after forwarding")
            if fault == "after-reset":
                await reply.read()
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            response = web.StreamResponse(status=reply.status, headers=out)
            if reply.content_length is not None:
                response.content_length = reply.content_length
            await response.prepare(request)
            is_blob = "/blobs/sha256:" in request.path and request.method == "GET"
            sent = 0
            cut_at = (reply.content_length or 0) // 2 if fault == "reset" else None
            async for chunk in reply.content.iter_chunked(256 * 1024):
                if cut_at is not None and sent + len(chunk) > cut_at:
                    chunk = chunk[: cut_at - sent]
                    await response.write(chunk)
                    if is_blob:
                        self.bytes_out += len(chunk)
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(chunk)
                sent += len(chunk)
                if is_blob:
                    self.bytes_out += len(chunk)
                    await self._hold_past(request, self.bytes_out)
            await response.write_eof()
            return response
