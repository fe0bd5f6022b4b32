"""Reading a whole HTTP reply body, but never more than a limit."""

from __future__ import annotations

import aiohttp

__all__ = ["read_at_most"]


async def read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body until EOF, or its first `limit` + 1 bytes if it is longer (so callers can
    tell "too long" from "exactly the limit"). `StreamReader.read(n)` alone may stop early."""
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = await resp.content.read(limit + 1 - total)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)
