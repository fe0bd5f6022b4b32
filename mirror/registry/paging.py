"""The registry list APIs (tags, catalog, ACR's listings), page by page, bounded: a `Link`
back to a page already read, or more pages or items than the limits allow, is an error."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

from yarl import URL

from mirror.errors import RegistryError
from mirror.registry.errors import Missing
from mirror.registry.transport import RegistryTransport, read_body
from mirror.retry import Attempt, Repeat
from mirror.support import jsonutil

__all__ = ["MAX_PAGE", "next_link", "paged_items", "paged_names"]

#: the most one page of a listing may hold
MAX_PAGE = 64 * 1024 * 1024


async def paged_names(
    transport: RegistryTransport, first: str, key: str, *, scopes: Iterable[str], what: str
) -> AsyncIterator[str]:
    """The strings under `key` in every page of a list API, following `Link: rel="next"`."""
    async for item in paged_items(transport, first, key, scopes=scopes, what=what):
        yield str(item)


async def paged_items(
    transport: RegistryTransport,
    first: str,
    key: str,
    *,
    scopes: Iterable[str],
    what: str,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Any]:
    """The items under `key` in every page of a list API, following `Link: rel="next"`.

    Bounded: a `Link` that names a page already read, or a listing longer than the limits
    allow (pages, items), is an error rather than a run that never ends.
    """
    target: str | URL = first
    scope_tuple = tuple(scopes)
    limits = transport.options.limits
    visited: set[str] = set()
    items = 0

    async def page(_: Attempt) -> tuple[Any, str | None, URL]:
        """The page at `target`: a read, asked again whole."""
        resp = await transport.request(
            "GET",
            target,
            scopes=scope_tuple,
            what=what,
            missing=Missing.REPOSITORY,
            headers=headers,
        )
        try:
            raw = await read_body(resp, MAX_PAGE, what, transport.options.limits)
            return jsonutil.loads(raw or b"{}"), next_link(resp.headers.get("Link")), resp.url
        except ValueError:
            raise RegistryError(f"{what}: the registry sent no JSON") from None
        finally:
            resp.release()

    while True:
        body, link, url = await transport.retry.run(page, Repeat.WHOLE)
        visited.add(str(url))
        found = (body if isinstance(body, dict) else {}).get(key) or []
        items += len(found) if isinstance(found, list) else 0
        if items > limits.max_list_items:
            raise RegistryError(f"{what}: more than {limits.max_list_items} items; stopped")
        for item in found if isinstance(found, list) else ():
            yield item
        if not link:
            return
        target = url.join(URL(link, encoded=True))
        if str(target) in visited:
            raise RegistryError(f"{what}: the registry links back to a page already read")
        if len(visited) >= limits.max_list_pages:
            raise RegistryError(f"{what}: more than {limits.max_list_pages} pages; stopped")


_LINK_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def next_link(header: str | None) -> str | None:
    """The `rel="next"` target of a Link header, if any."""
    if not header:
        return None
    match = _LINK_RE.search(header)
    return match.group(1) if match else None
