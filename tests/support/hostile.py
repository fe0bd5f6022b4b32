"""A hostile registry: speaks the distribution API like the real service (a `/v2/` ping, a
Basic or Bearer challenge, error bodies, `Docker-Content-Digest`, `Link` paging), but shapes
what it serves to attack the client: trickled bodies, endless listings, deep or wide graphs,
huge declared sizes, malformed tokens. Only for what a real registry cannot be made to do.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    """The sha256 digest of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": None}]}
    return web.json_response(body, status=status)


@dataclass
class HostileRegistry:
    """Serves `manifests` (digest -> (bytes, media type)), `blobs` (digest -> bytes) and
    `tags` (tag -> digest) for any repository, with the attacks switched on below."""

    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: seconds between bytes for these kinds of body: "manifest", "blob", "token"
    trickle: dict[str, float] = field(default_factory=dict)
    #: tags/list: "endless" pages with fresh links forever, "loop" links back to itself
    paging: str | None = None
    #: a Basic challenge on every request without the right Authorization
    basic_realm: str | None = None
    #: a Bearer challenge naming this realm URL (the token endpoint may be on another host)
    bearer_realm: str | None = None
    #: what the token endpoint answers as the token
    token_value: str = "good-token"
    #: answer the first N blob GETs 503 (a passing outage), then serve them
    unavailable_first: int = 0
    #: send blobs chunked and drop the connection right after the last byte (no final chunk)
    cut_after_last_byte: bool = False
    #: the repositories `_catalog` lists (None: one, "app")
    repositories: list[str] | None = None
    #: the message of a MANIFEST_UNKNOWN error body
    unknown_message: str = "manifest unknown"
    #: how uploads are answered: None (no upload API), "rewind" (every PATCH taken and
    #: answered `Range: 0-0`), "rewind-every-other" (every second PATCH of an upload),
    #: "early-404" (a PATCH answered 404 before its body is read), "min-length" (the POST
    #: asks for a minimum chunk size of 5,000 digits)
    uploads: str | None = None
    #: bytes of upload bodies read
    upload_bytes: int = 0
    #: PATCHes received
    patches: int = 0
    #: every Range header received
    ranges: list[str] = field(default_factory=list)
    #: every Authorization header received, by path
    authorizations: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0

    def app(self) -> web.Application:
        """The aiohttp application (registry API and a /token endpoint)."""
        app = web.Application(client_max_size=1 << 30)  # upload bodies of large chunks
        app.router.add_get("/v2/", self.ping)
        app.router.add_get("/v2/_catalog", self.catalog)
        app.router.add_get("/token", self.token)
        app.router.add_post("/v2/{name:.+}/blobs/uploads/", self.upload_start)
        app.router.add_route("*", "/v2/{name:.+}/blobs/uploads/{id}", self.upload)
        app.router.add_route("*", "/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_route("*", "/v2/{name:.+}/blobs/{digest}", self.blob)
        app.router.add_get("/v2/{name:.+}/tags/list", self.tag_list)
        return app

    # -- helpers ------------------------------------------------------------------------

    def add_manifest(self, obj: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
        """Serve a manifest or index; return its descriptor."""
        raw = canonical(obj)
        digest = digest_of(raw)
        self.manifests[digest] = (raw, obj["mediaType"])
        if tag:
            self.tags[tag] = digest
        return {"mediaType": obj["mediaType"], "digest": digest, "size": len(raw)}

    def add_blob(self, data: bytes, media_type: str = OCI_LAYER) -> dict[str, Any]:
        """Serve a blob; return its descriptor."""
        digest = digest_of(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def challenge(self, request: web.Request) -> web.Response | None:
        """401 with the configured challenge when the request is not authorised."""
        header = request.headers.get("Authorization", "")
        if header:
            self.authorizations.append((request.path, header))
        if self.basic_realm is not None and not header.startswith("Basic "):
            return web.Response(
                status=401,
                headers={"WWW-Authenticate": f'Basic realm="{self.basic_realm}"'},
                text='{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            )
        if self.bearer_realm is not None and header != f"Bearer {self.token_value}":
            scope = f"repository:{request.match_info.get('name', 'x')}:pull"
            return web.Response(
                status=401,
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="{self.bearer_realm}",service="hostile",scope="{scope}"'
                    )
                },
                text='{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            )
        return None

    async def _send(
        self, request: web.Request, body: bytes, kind: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        delay = self.trickle.get(kind)
        if delay is None or request.method == "HEAD":
            response = web.Response(
                body=None if request.method == "HEAD" else body, headers=headers
            )
            if request.method == "HEAD":
                response.content_length = len(body)
            return response
        stream = web.StreamResponse(headers=headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        try:
            for i in range(len(body)):
                await stream.write(body[i : i + 1])
                await asyncio.sleep(delay)
            await stream.write_eof()
        except ConnectionResetError:
            pass  # the client gave up, as it should
        return stream

    # -- handlers -----------------------------------------------------------------------

    async def ping(self, request: web.Request) -> web.Response:
        """`/v2/`: 200, or the challenge."""
        self.requests += 1
        return self.challenge(request) or web.json_response({})

    async def token(self, request: web.Request) -> web.StreamResponse:
        """The token endpoint: the configured token (possibly trickled or malformed)."""
        self.requests += 1
        header = request.headers.get("Authorization", "")
        if header:
            self.authorizations.append((request.path, header))
        body = canonical({"token": self.token_value, "expires_in": 300})
        return await self._send(request, body, "token", {"Content-Type": "application/json"})

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        """A manifest by tag or digest."""
        self.requests += 1
        denied = self.challenge(request)
        if denied is not None:
            return denied
        ref = request.match_info["ref"]
        digest = self.tags.get(ref, ref)
        if digest not in self.manifests:
            return _error(404, "MANIFEST_UNKNOWN", self.unknown_message)
        raw, media_type = self.manifests[digest]
        headers = {"Content-Type": media_type, "Docker-Content-Digest": digest}
        return await self._send(request, raw, "manifest", headers)

    async def blob(self, request: web.Request) -> web.StreamResponse:
        """A blob by digest."""
        self.requests += 1
        denied = self.challenge(request)
        if denied is not None:
            return denied
        digest = request.match_info["digest"]
        if digest not in self.blobs:
            return _error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        if "Range" in request.headers:
            self.ranges.append(request.headers["Range"])
        if self.unavailable_first and request.method == "GET":
            self.unavailable_first -= 1
            return _error(503, "UNAVAILABLE", "service unavailable")
        if self.cut_after_last_byte and request.method == "GET":
            stream = web.StreamResponse(headers=headers)
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            await stream.write(self.blobs[digest])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()  # the terminating chunk never comes
            return stream
        return await self._send(request, self.blobs[digest], "blob", headers)

    async def upload_start(self, request: web.Request) -> web.Response:
        """POST: a new upload session (with `uploads` set), else UNSUPPORTED."""
        self.requests += 1
        if self.uploads is None:
            return _error(405, "UNSUPPORTED", "uploads are not taken here")
        name = request.match_info["name"]
        headers = {"Location": f"/v2/{name}/blobs/uploads/u{self.requests}", "Range": "0-0"}
        if self.uploads == "min-length":
            headers["OCI-Chunk-Min-Length"] = "9" * 5000
        return web.Response(status=202, headers=headers)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """An upload session: PATCHes answered as `uploads` says; status says 0 bytes."""
        self.requests += 1
        if request.method == "PATCH":
            self.patches += 1
            if self.uploads == "early-404":
                return _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
            body = await request.read()
            self.upload_bytes += len(body)
            end = request.headers.get("Content-Range", "0-0").partition("-")[2]
            honest = self.uploads == "rewind-every-other" and self.patches % 2 == 1
            held = f"0-{end}" if honest else "0-0"
            return web.Response(status=202, headers={"Location": request.path, "Range": held})
        if request.method == "GET":
            return web.Response(status=204, headers={"Location": request.path, "Range": "0-0"})
        if request.method == "PUT":  # a monolithic upload (small blobs) is taken as it is
            digest = request.query.get("digest", "")
            body = await request.read()
            if digest != digest_of(body):
                return _error(400, "DIGEST_INVALID", "provided digest did not match")
            self.blobs[digest] = body
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        return _error(400, "BLOB_UPLOAD_INVALID", "not taken")

    async def catalog(self, request: web.Request) -> web.Response:
        """Repositories: with `paging = "endless"`, fresh pages forever."""
        self.requests += 1
        if self.paging != "endless":
            return web.json_response({"repositories": self.repositories or ["app"]})
        last = int(request.query.get("last", "0"))
        page = [f"r/{last + i}" for i in range(1, 1001)]
        link = f'</v2/_catalog?n=1000&last={last + 1000}>; rel="next"'
        return web.json_response({"repositories": page}, headers={"Link": link})

    async def tag_list(self, request: web.Request) -> web.Response:
        """Tags, paged with `n` and `last` like distribution; or an endless or looping list."""
        self.requests += 1
        denied = self.challenge(request)
        if denied is not None:
            return denied
        name = request.match_info["name"]
        if self.paging == "loop":
            link = f'</v2/{name}/tags/list?n=2&last=b>; rel="next"'
            return web.json_response({"name": name, "tags": ["a", "b"]}, headers={"Link": link})
        if self.paging == "endless":
            last = int(request.query.get("last", "0"))
            page = [f"t{last + i}" for i in range(1, 1001)]
            link = f'</v2/{name}/tags/list?n=1000&last={last + 1000}>; rel="next"'
            return web.json_response({"name": name, "tags": page}, headers={"Link": link})
        return web.json_response({"name": name, "tags": sorted(self.tags)})


def image(registry: HostileRegistry, tag: str, layer: bytes = b"layer") -> dict[str, Any]:
    """A small valid image (config and one layer) served under `tag`; its descriptor."""
    config = registry.add_blob(
        canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}),
        OCI_CONFIG,
    )
    layer_desc = registry.add_blob(layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [layer_desc],
    }
    return registry.add_manifest(manifest, tag)


def basic(user: str, password: str) -> str:
    """The Basic Authorization header value for a pair."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
