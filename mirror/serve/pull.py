"""The pull side of the distribution spec 1.1: the base endpoint, manifests and blobs (GET,
HEAD, `Range`), tag and repository listings with `n`/`last` paging and `Link`, and the
referrers API with its `artifactType` filter."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from mirror.oci import mediatypes as mt
from mirror.serve.answers import ApiError, json_response
from mirror.serve.content import Content
from mirror.serve.paths import Route, check_digest, check_reference
from mirror.serve.spans import SpanResponse, parse_range

__all__ = ["MAX_PAGE", "base", "blob", "catalog", "manifest", "page", "referrers", "tags"]

#: the most entries one listing page holds, whatever `n` asks
MAX_PAGE = 10_000


async def base(request: web.Request) -> web.StreamResponse:
    """`/v2/`: this is a registry speaking the v2 API."""
    return json_response({})


async def manifest(content: Content, request: web.Request, route: Route) -> web.StreamResponse:
    """A manifest's exact bytes, by tag or digest, with its media type and digest."""
    reference = check_reference(route.reference)
    desc, raw = await content.manifest(route.name, reference)
    headers = {"Docker-Content-Digest": str(desc.digest)}
    return web.Response(body=raw, headers=headers, content_type=desc.media_type, charset=None)


async def blob(
    content: Content, request: web.Request, route: Route, *, stall: float = 60.0
) -> web.StreamResponse:
    """A blob's bytes from where they are stored, under any repository name (blobs are
    shared, as pushes and mounts make them); `Range` gives 206, or 416 outside it."""
    digest = check_digest(route.reference)
    found = content.locate(digest)
    if found is None:
        raise ApiError(404, "BLOB_UNKNOWN", f"blob {digest} is not served here")
    wanted = parse_range(request.headers.get("Range"), found.size)
    span = await found.open()
    first, last = wanted if wanted is not None else (0, found.size - 1)
    status = 200 if wanted is None else 206
    response = SpanResponse(
        span.fd, span.start + first, last - first + 1, status=status, stall=stall
    )
    response.headers["Docker-Content-Digest"] = str(digest)
    response.headers["Accept-Ranges"] = "bytes"
    response.content_type = "application/octet-stream"
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{found.size}"
    return response


def page(
    request: web.Request, names: list[str], key: str, extra: dict[str, Any] | None = None
) -> web.StreamResponse:
    """One page of a sorted listing (with the fields of `extra`): after `last`, at most `n`,
    and a `Link` to the next page."""
    last = request.query.get("last")
    after = [n for n in names if last is None or n > last]
    n_text = request.query.get("n")
    limit = MAX_PAGE
    if n_text is not None:
        if not n_text.isdigit():
            raise ApiError(400, "UNSUPPORTED", "n must be a non-negative integer")
        limit = min(int(n_text), MAX_PAGE)
    shown = after[:limit]
    headers: dict[str, str] = {}
    if len(after) > limit and shown:
        query = urlencode({"n": limit, "last": shown[-1]})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    body: dict[str, Any] = {**(extra or {}), key: shown}
    return json_response(body, headers=headers)


async def tags(content: Content, request: web.Request, route: Route) -> web.StreamResponse:
    """`tags/list` of a repository, sorted, paged."""
    snap = await content.repository(route.name)
    return page(request, sorted(snap.tags.get(route.name, {})), "tags", {"name": route.name})


async def catalog(content: Content, request: web.Request) -> web.StreamResponse:
    """`_catalog`: every repository served, sorted, paged."""
    snap = await content.snapshot()
    return page(request, sorted(snap.roots), "repositories")


async def referrers(content: Content, request: web.Request, route: Route) -> web.StreamResponse:
    """The referrers of a digest as an image index; `artifactType` filters it (and says so
    in `OCI-Filters-Applied`)."""
    subject = check_digest(route.reference)
    found = await content.referrers(route.name, subject)
    headers: dict[str, str] = {}
    wanted = request.query.getall("artifactType", [])
    if wanted:
        found = [d for d in found if d.get("artifactType") in wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
    response = json_response(body, headers=headers)
    response.content_type = mt.OCI_INDEX
    return response
