"""A scripted Azure Container Registry, for what the real registry cannot show: the AAD token
exchange, JWT-dated tokens, the /acr/v1 metadata API, blob GETs redirected to storage.

It keeps repositories in memory (`/acr/v1` and manifest DELETEs act on them) and forwards
other `/v2/` requests to a real registry, redirecting blob GETs to a StorageServer host.
Every request but the token endpoints needs a bearer token granting the right action.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.support.scripted import ScriptedProxy


def fake_jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT (the client only reads `exp`)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


def _all_enabled() -> dict[str, bool]:
    return {"deleteEnabled": True, "writeEnabled": True, "listEnabled": True, "readEnabled": True}


@dataclass
class AcrTag:
    """A tag in the scripted registry."""

    name: str
    digest: str
    created: str
    attrs: dict[str, bool] = field(default_factory=_all_enabled)
    #: set when a write moves `lastUpdateTime` on
    updated: str | None = None


@dataclass
class AcrManifest:
    """A manifest in the scripted registry."""

    digest: str
    created: str
    size: int = 1234
    attrs: dict[str, bool] = field(default_factory=_all_enabled)
    updated: str | None = None
    media_type: str = "application/vnd.oci.image.manifest.v1+json"
    architecture: str = "amd64"
    os: str = "linux"


@dataclass
class ScriptedAcr:
    """The scripted registry. `host` is set once it listens."""

    upstream: str
    storage: str
    token_ttl: int = 3600
    anonymous_actions: frozenset[str] = frozenset()
    host: str = ""
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)
    exchanges: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    #: every token and metadata request: (method, raw path and query, Accept header)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    _refresh: set[str] = field(default_factory=set)
    _access: dict[str, tuple[set[str], float]] = field(default_factory=dict)

    def add_repository(self, name: str, manifests: list[tuple[str, str, list[str]]]) -> None:
        """A repository of (digest, created time, tags) entries."""
        repo: dict[str, Any] = {"manifests": {}, "tags": {}, "attrs": _all_enabled()}
        for digest, created, tags in manifests:
            repo["manifests"][digest] = AcrManifest(digest, created)
            for tag in tags:
                repo["tags"][tag] = AcrTag(tag, digest, created)
        self.repositories[name] = repo

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/oauth2/exchange", self.exchange)
        app.router.add_route("*", "/oauth2/token", self.token)
        app.router.add_route("*", "/{tail:.*}", self.guarded)
        self._proxy = ScriptedProxy(
            self.upstream, redirect_blobs_to=self.storage, relative_locations=True
        )
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(("/oauth2/", "/acr/v1/")):
            raw = request.raw_path
            self.calls.append((request.method, raw, request.headers.get("Accept", "")))
        response: web.StreamResponse = await handler(request)
        return response

    # -- tokens -------------------------------------------------------------------------------

    async def exchange(self, request: web.Request) -> web.Response:
        """AAD access token -> ACR refresh token."""
        form = dict(await request.post())
        self.exchanges.append({k: str(v) for k, v in form.items()})
        if form.get("grant_type") != "access_token" or not str(
            form.get("access_token", "")
        ).startswith("aad-"):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        refresh = fake_jwt({"exp": int(time.time()) + 3 * 3600, "jti": secrets.token_hex(4)})
        self._refresh.add(refresh)
        return web.json_response({"refresh_token": refresh})

    async def token(self, request: web.Request) -> web.Response:
        """refresh token (or anonymous) -> access token for the scopes asked."""
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.post()).items()}
        else:
            form = {
                "grant_type": "anonymous-get",
                "scope": " ".join(request.query.getall("scope", [])),
            }
        self.token_requests.append(form)
        grant = form.get("grant_type")
        scopes = form.get("scope", "").split()
        if grant == "refresh_token" and form.get("refresh_token") in self._refresh:
            granted = set(scopes)
        elif grant in ("password", "anonymous-get") and not form.get("refresh_token"):
            granted = {
                s
                for s in scopes
                if set(s.rpartition(":")[2].split(",")) <= set(self.anonymous_actions)
            }
        else:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        exp = time.time() + self.token_ttl
        access = fake_jwt({"exp": int(exp), "jti": secrets.token_hex(4)})
        self._access[access] = (granted, exp)
        return web.json_response({"access_token": access})

    # -- guarded routes ---------------------------------------------------------------------

    def _needed(self, request: web.Request) -> str:
        path, method = request.path, request.method
        if path.endswith("/_catalog"):
            return "registry:catalog:*"
        if path.startswith("/acr/v1/"):
            name = path.removeprefix("/acr/v1/").split("/_")[0]
            meta = {"GET": "metadata_read", "PATCH": "metadata_write", "DELETE": "delete"}
            return f"repository:{name}:{meta.get(method, 'metadata_read')}"
        rest = path.removeprefix("/v2/")
        cut = min(
            (i for i in (rest.find(m) for m in ("/blobs/", "/manifests/", "/tags/")) if i >= 0),
            default=len(rest),
        )
        name = rest[:cut]
        action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "push")
        return f"repository:{name}:{action}"

    def _granted(self, request: web.Request, needed: str) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        granted, exp = self._access.get(token, (set(), 0.0))
        if exp < time.time():
            return False
        kind, _, rest = needed.partition(":")
        name, _, action = rest.rpartition(":")
        for scope in granted:
            g_kind, _, g_rest = scope.partition(":")
            g_name, _, g_actions = g_rest.rpartition(":")
            wanted = "push" if action == "push" else action
            if (g_kind, g_name) == (kind, name) and (
                wanted in g_actions.split(",") or g_actions == "*"
            ):
                return True
        return False

    async def guarded(self, request: web.Request) -> web.StreamResponse:
        """Demand a token with the right action, then serve /acr/v1 or forward /v2/."""
        needed = self._needed(request)
        if request.path in ("/v2", "/v2/"):
            needed = ""  # the service answers the ping with its challenge, no scope
        if needed == "" or not self._granted(request, needed):
            if needed == "" and request.headers.get("Authorization", "").startswith("Bearer "):
                return web.Response(status=200)
            challenge = f'Bearer realm="http://{self.host}/oauth2/token",service="{self.host}"'
            if needed:
                challenge += f',scope="{needed}"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        if request.path.startswith("/acr/v1/"):
            return await self.metadata(request)
        if request.method == "DELETE" and "/manifests/" in request.path:
            name, _, ref = request.path.removeprefix("/v2/").partition("/manifests/")
            repo = self.repositories.get(name)
            if repo and ref in repo["manifests"]:
                if not repo["manifests"][ref].attrs["deleteEnabled"]:
                    return _denied("the manifest is locked against deletes")
                del repo["manifests"][ref]
                repo["tags"] = {t: v for t, v in repo["tags"].items() if v.digest != ref}
                return web.Response(status=202)
        if request.method == "PUT" and "/manifests/" in request.path:
            return await self._push(request)
        return await self._proxy.handle(request)

    async def _push(self, request: web.Request) -> web.StreamResponse:
        """A manifest PUT: refused onto a write-locked tag; otherwise forwarded, and the
        metadata API then describes what was pushed (digest, size, media type, platform,
        times: the tag's `lastUpdateTime` moves, its `createdTime` stays)."""
        name, _, ref = request.path.removeprefix("/v2/").partition("/manifests/")
        repo = self.repositories.setdefault(
            name, {"manifests": {}, "tags": {}, "attrs": _all_enabled()}
        )
        tag = repo["tags"].get(ref)
        if tag is not None and not tag.attrs["writeEnabled"]:
            return _denied("the tag is locked against writes")
        body = await request.read()
        response = await self._proxy.handle(request)  # aiohttp keeps the body read
        if response.status != 201:
            return response
        digest = response.headers.get("Docker-Content-Digest", "")
        manifest = json.loads(body)
        now = _now()
        entry = repo["manifests"].setdefault(digest, AcrManifest(digest, now))
        entry.size = len(body)
        entry.media_type = str(manifest.get("mediaType") or request.content_type)
        entry.architecture, entry.os = await self._platform(name, manifest)
        if not ref.startswith("sha256:"):
            if tag is None:
                repo["tags"][ref] = AcrTag(ref, digest, now)
            else:
                tag.digest, tag.updated = digest, now
        return response

    async def _platform(self, name: str, manifest: dict[str, Any]) -> tuple[str, str]:
        config = manifest.get("config") or {}
        if "image.config" not in str(config.get("mediaType", "")) and "container.image" not in str(
            config.get("mediaType", "")
        ):
            return "", ""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{self.upstream}/v2/{name}/blobs/{config['digest']}") as reply,
        ):
            obj = json.loads(await reply.read())
        return str(obj.get("architecture", "")), str(obj.get("os", ""))

    # -- /acr/v1 ----------------------------------------------------------------------------

    async def metadata(self, request: web.Request) -> web.Response:
        """The metadata API over the in-memory repositories."""
        self.queries.append(request.path_qs)
        path = request.path.removeprefix("/acr/v1/")
        if path == "_catalog":
            names, link = _page(request, sorted(self.repositories), lambda n: n)
            return web.json_response({"repositories": names}, headers=link)
        name, _, rest = path.partition("/_")
        repo = self.repositories.get(name)
        if repo is None:
            return _unknown("NAME_UNKNOWN")
        body = await request.json() if request.method == "PATCH" else None
        if body is not None:
            self.patches.append((request.path, body))
            unknown = set(body) - set(_all_enabled())
            if unknown or not all(isinstance(v, bool) for v in body.values()):
                return web.json_response(
                    {"errors": [{"code": "UNSUPPORTED", "message": f"unknown keys {unknown}"}]},
                    status=400,
                )
        if rest == "":
            return self._repository_reply(request, name, repo, body)
        kind, _, item = rest.partition("/")
        order = request.query.get("orderby", "timedesc")
        if kind == "tags":
            return self._tags_reply(request, name, repo, item, body, order)
        if kind == "manifests":
            return self._manifests_reply(request, name, repo, item, body, order)
        return _unknown("UNSUPPORTED")

    def _repository_reply(
        self, request: web.Request, name: str, repo: dict[str, Any], body: Any
    ) -> web.Response:
        if request.method == "DELETE":
            del self.repositories[name]
            return web.json_response({"manifestsDeleted": [], "tagsDeleted": []}, status=202)
        if body:
            repo["attrs"].update(body)
        return web.json_response(
            {
                "registry": self.host,
                "imageName": name,
                "createdTime": "2024-01-01T00:00:00.1234567Z",
                "lastUpdateTime": "2024-01-05T00:00:00Z",
                "manifestCount": len(repo["manifests"]),
                "tagCount": len(repo["tags"]),
                "changeableAttributes": repo["attrs"],
            }
        )

    def _tags_reply(
        self,
        request: web.Request,
        name: str,
        repo: dict[str, Any],
        item: str,
        body: Any,
        order: str,
    ) -> web.Response:
        def tag_json(tag: AcrTag) -> dict[str, Any]:
            return {
                "name": tag.name,
                "digest": tag.digest,
                "createdTime": tag.created,
                "lastUpdateTime": tag.updated or tag.created,
                "changeableAttributes": tag.attrs,
            }

        if not item:
            tags = sorted(
                repo["tags"].values(), key=lambda t: t.created, reverse=order == "timedesc"
            )
            digest = request.query.get("digest")
            tags = [t for t in tags if digest is None or t.digest == digest]
            page, link = _page(request, tags, lambda t: t.name)
            return web.json_response(
                {"registry": self.host, "imageName": name, "tags": [tag_json(t) for t in page]},
                headers=link,
            )
        tag = repo["tags"].get(item)
        if tag is None:
            return _unknown("TAG_UNKNOWN")
        if request.method == "DELETE":
            if not tag.attrs["deleteEnabled"]:
                return _denied("the tag is locked")
            del repo["tags"][item]
            return web.Response(status=202)
        if body:
            tag.attrs.update(body)  # as the service does: lastUpdateTime stays
        return web.json_response({"registry": self.host, "imageName": name, "tag": tag_json(tag)})

    def _manifests_reply(
        self,
        request: web.Request,
        name: str,
        repo: dict[str, Any],
        item: str,
        body: Any,
        order: str,
    ) -> web.Response:
        def manifest_json(m: AcrManifest) -> dict[str, Any]:
            tags = sorted(t.name for t in repo["tags"].values() if t.digest == m.digest)
            return {
                "digest": m.digest,
                "imageSize": m.size,
                "createdTime": m.created,
                "lastUpdateTime": m.updated or m.created,
                "architecture": m.architecture,
                "os": m.os,
                "mediaType": m.media_type,
                "tags": tags,
                "changeableAttributes": m.attrs,
            }

        if not item:
            found = sorted(
                repo["manifests"].values(), key=lambda m: m.created, reverse=order == "timedesc"
            )
            page, link = _page(request, found, lambda m: m.digest)
            return web.json_response(
                {
                    "registry": self.host,
                    "imageName": name,
                    "manifests": [manifest_json(m) for m in page],
                },
                headers=link,
            )
        manifest = repo["manifests"].get(item)
        if manifest is None:
            return _unknown("MANIFEST_UNKNOWN")
        if body:
            manifest.attrs.update(body)  # as the service does: lastUpdateTime stays
        return web.json_response(
            {"registry": self.host, "imageName": name, "manifest": manifest_json(manifest)}
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _denied(message: str) -> web.Response:
    return web.json_response({"errors": [{"code": "DENIED", "message": message}]}, status=403)


T = TypeVar("T")


def _page(
    request: web.Request, items: list[T], key: Callable[[T], str]
) -> tuple[list[T], dict[str, str]]:
    """One page as the service pages: `n` items (100 when not asked) after the one named by
    `last`, and a relative `Link: <…>; rel="next"` while more remain."""
    n = int(request.query.get("n", "100"))
    last = request.query.get("last")
    start = next((i + 1 for i, item in enumerate(items) if key(item) == last), 0) if last else 0
    page = items[start : start + n]
    if start + n >= len(items):
        return page, {}
    query = {**request.query, "last": key(page[-1]), "n": str(n)}
    path = request.raw_path.partition("?")[0]  # as asked: a name stays one encoded segment
    link = f'<{path}?{urlencode(query)}>; rel="next"'
    return page, {"Link": link}


def _unknown(code: str) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": "not found"}]}, status=404)


@dataclass
class FakeCredential:
    """A TokenCredential test double: records the scopes asked, hands out AAD tokens."""

    scopes: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """azure.core.credentials.TokenCredential.get_token."""
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        self.issued.append(f"aad-{len(self.scopes)}-{secrets.token_hex(4)}")
        return AccessToken(self.issued[-1], int(time.time()) + 3600)
