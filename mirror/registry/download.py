"""Blob downloads that survive cut connections: re-request from the byte reached, verify once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp

from mirror.endpoint import RangeNotHonoured
from mirror.errors import SizeMismatch, TransportError
from mirror.limits import Limits
from mirror.oci.digest import DigestHasher, check_content
from mirror.oci.model import Descriptor
from mirror.registry.errors import Missing
from mirror.registry.handle import RepositoryHandle
from mirror.support.httpbody import StallGuard

__all__ = ["CHUNK_SIZE", "open_blob", "open_range"]

CHUNK_SIZE = 1024 * 1024
#: the most a blob download's connection reads from its socket at once
SOCKET_READ = 1024 * 1024


async def open_blob(
    repo: RepositoryHandle, desc: Descriptor, offset: int = 0, *, verify: bool = True
) -> AsyncGenerator[bytes, None]:
    """Stream a blob from `offset`; verified when read from 0; resumes on retryable errors.

    After a reset or a 5xx the rest is asked for with `Range: bytes=N-`; a server that
    ignores the range is read from the start with the first N bytes dropped, so no byte is
    yielded twice or skipped. With `verify=False` the caller verifies and resumes (a copy's
    destination re-opens its source where it stopped): one attempt, and its error raised,
    so that retries are counted in one place.
    """
    attempts = repo.retry.attempts()
    hasher = DigestHasher(desc.digest.algorithm) if offset == 0 and verify else None
    position = offset
    what = repo.describe("blob", str(desc.digest))
    while True:
        try:
            async for chunk in _get_from(repo, desc, position, what):
                if position + len(chunk) > desc.size:
                    raise SizeMismatch(f"{what}: more than the expected {desc.size} bytes")
                position += len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                yield chunk
            if position < desc.size:
                raise TransportError(f"{what}: connection ended at byte {position} of {desc.size}")
            break
        except Exception as exc:
            if position == desc.size and isinstance(exc, TransportError):
                break  # cut after the last byte: every byte is here, the digest decides
            if not verify:
                raise
            await attempts.failed(exc)
    if hasher is not None:
        check_content(hasher, desc.digest, desc.size, "blob")


async def open_range(
    repo: RepositoryHandle, desc: Descriptor, start: int, end: int
) -> AsyncGenerator[bytes, None]:
    """Bytes [start, end) with `Range: bytes=start-(end-1)`; RangeNotHonoured on a 200."""
    what = repo.describe("blob", str(desc.digest))
    resp = await _get(repo, desc, what, f"bytes={start}-{end - 1}")
    try:
        if resp.status == 200 and (start, end) != (0, desc.size):
            raise RangeNotHonoured(f"{what}: the registry ignores Range")
        async for chunk in _body(resp, what, repo.limits):
            yield chunk
    finally:
        resp.release()


async def _get_from(
    repo: RepositoryHandle, desc: Descriptor, offset: int, what: str
) -> AsyncIterator[bytes]:
    resp = await _get(repo, desc, what, f"bytes={offset}-" if offset else None)
    try:
        skip = offset if resp.status == 200 else 0
        expected = desc.size - offset + skip
        if resp.content_length is not None and resp.content_length > expected:
            raise SizeMismatch(
                f"{what}: server sends {resp.content_length} bytes, expected {expected}"
            )
        async for chunk in _body(resp, what, repo.limits):
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            if chunk:
                yield chunk
    finally:
        resp.release()


async def _get(
    repo: RepositoryHandle, desc: Descriptor, what: str, byte_range: str | None
) -> aiohttp.ClientResponse:
    """GET the blob (a 200 or a 206 for `byte_range`); redirects go without credentials."""
    return await repo.transport.request(
        "GET",
        f"/v2/{repo.name}/blobs/{desc.digest}",
        scopes=repo.pull,
        what=what,
        missing=Missing.BLOB,
        ok=(200, 206),
        headers={"Range": byte_range} if byte_range else {},
    )


def _read_large(resp: aiohttp.ClientResponse) -> None:
    """Let the connection take up to SOCKET_READ bytes per read from its socket (asyncio's
    transports take 256 KiB): a blob arrives in a quarter of the reads, and each read's
    parsing and wake-up is paid a quarter as often (about a tenth of a pull's CPU). Transports
    without the knob (another event loop) are left as they are."""
    transport = resp.connection.transport if resp.connection is not None else None
    if transport is not None and hasattr(transport, "max_size"):
        with contextlib.suppress(AttributeError, TypeError):
            transport.max_size = SOCKET_READ


async def _body(
    resp: aiohttp.ClientResponse, what: str, limits: Limits
) -> AsyncGenerator[bytes, None]:
    """A reply body in chunks; a cut or stalled connection becomes a (retryable)
    TransportError."""
    _read_large(resp)
    guard = StallGuard(what, limits)
    try:
        async with guard.watching():
            while chunk := await guard.read(resp, CHUNK_SIZE):
                yield chunk
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransportError(f"{what}: download interrupted: {exc}") from None
