"""Turning registry error replies into mirror's typed exceptions (one line, no secrets)."""

from __future__ import annotations

import enum
from typing import NoReturn

import aiohttp

from mirror.errors import (
    BlobNotFound,
    Forbidden,
    ManifestNotFound,
    NotFound,
    RateLimited,
    RegistryError,
    RepositoryNotFound,
    ServerError,
    TransportError,
    Unauthorized,
)
from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.registry.ratelimit import parse_budget
from mirror.retry import parse_retry_after
from mirror.support import jsonutil
from mirror.support.httpbody import read_at_most

__all__ = ["RETRYABLE_CODES", "RETRYABLE_STATUS", "parse_retry_after", "raise_for_status"]

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRYABLE_CODES = frozenset({"TOOMANYREQUESTS", "UNAVAILABLE", "UNKNOWN", "BLOB_UPLOAD_INVALID"})
_MAX_ERROR_BODY = 64 * 1024


def _codes_and_message(body: bytes) -> tuple[list[str], str]:
    try:
        obj = jsonutil.loads(body)
    except ValueError:
        return [], ""
    errors = obj.get("errors") if isinstance(obj, dict) else None
    if not isinstance(errors, list):
        return [], ""
    codes = [str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code")]
    messages = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
    return codes, "; ".join(messages)


class Missing(enum.Enum):
    """What a request asks for, which decides the NotFound its 404 raises."""

    ANYTHING = NotFound
    MANIFEST = ManifestNotFound
    BLOB = BlobNotFound
    REPOSITORY = RepositoryNotFound


async def raise_for_status(
    resp: aiohttp.ClientResponse,
    what: str,
    missing: Missing = Missing.ANYTHING,
    limits: Limits = DEFAULT_LIMITS,
) -> NoReturn:
    """Read a bounded error body and raise the matching RegistryError or NotFound.

    `what` names the thing asked for (e.g. "manifest app:v1 on host"); `missing` picks the
    NotFound a 404 raises.
    """
    try:
        body = await read_at_most(resp, _MAX_ERROR_BODY, limits)
    except (aiohttp.ClientError, OSError, TimeoutError, TransportError):
        body = b""
    codes, message = _codes_and_message(body)
    status, method = resp.status, resp.method
    detail = f": {' '.join(message.split())[:300]}" if message else ""
    unknown = {"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"} & set(codes)
    if status == 404 or (status == 400 and unknown):
        raise missing.value(f"{what} not found{detail}")
    retryable = status in RETRYABLE_STATUS or bool(RETRYABLE_CODES & set(codes))
    url = str(resp.url.with_query(None))
    if status == 429 or (status == 503 and resp.headers.get("Retry-After")):
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        budget = parse_budget(resp.headers)
        if retry_after is None and budget is not None and budget.remaining == 0:
            retry_after = budget.wait()  # the window the registry announced (capped later)
        raise RateLimited(
            f"{what}: rate limited ({status}){detail}",
            retry_after=retry_after,
            status=status,
            method=method,
            url=url,
            codes=codes,
        )
    cls_by_status: dict[int, tuple[type[RegistryError], str]] = {
        401: (Unauthorized, "authentication required or refused (401)"),
        403: (Forbidden, "access denied (403)"),
    }
    error_cls, text = cls_by_status.get(status, (RegistryError, f"{method} answered {status}"))
    if status >= 500:
        error_cls, text = ServerError, f"registry error {status}"
    raise error_cls(
        f"{what}: {text}{detail}",
        status=status,
        method=method,
        url=url,
        codes=codes,
        retryable=retryable,
    )
