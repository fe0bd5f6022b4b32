"""`serve`: the sources opened, the application made, the server run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mirror.errors import InvalidReference
from mirror.hosts import is_loopback
from mirror.oci.reference import is_valid_repository
from mirror.serve.access import Htpasswd
from mirror.serve.content import Content
from mirror.serve.push import Pushes
from mirror.serve.server import ServeSettings, make_app, run_server
from mirror.serve.sources import open_sources
from mirror.serve.writable import WritableLayout

__all__ = ["ServeRequest", "serve"]

_log = logging.getLogger("mirror.serve")


@dataclass(frozen=True)
class ServeRequest:
    """What `mirror serve` was asked."""

    sources: list[str]
    host: str = "127.0.0.1"
    port: int = 5000
    repository: str | None = None
    writable: str | None = None
    allow_delete: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    htpasswd: Path | None = None
    #: seconds a client may move nothing before it is cut off
    stall: float = 60.0
    #: the largest blob a push may upload
    max_blob: int = 1024**4


async def serve(request: ServeRequest, ready: Callable[[str], None]) -> None:
    """Serve until cancelled; `ready` is told the URL once the server listens."""
    if request.repository is not None and not is_valid_repository(request.repository):
        raise InvalidReference(f"--repository {request.repository!r} is not a repository name")
    if request.htpasswd and not request.tls_cert and not is_loopback(request.host):
        _log.warning("--htpasswd without --tls-cert: passwords cross the network in the clear")
    writable = None
    texts = list(request.sources)
    if request.writable is not None:
        path = Path(request.writable.removeprefix("oci:"))
        writable = WritableLayout(path, upload_idle=request.stall)
        await writable.prepare()
        texts.insert(0, f"oci:{path}")
    content = Content(await open_sources(texts, request.repository))
    pushes = None
    if writable is not None:
        pushes = Pushes(
            content,
            writable,
            allow_delete=request.allow_delete,
            stall=request.stall,
            max_blob=request.max_blob,
        )
    settings = ServeSettings(
        request.host,
        request.port,
        tls_cert=request.tls_cert,
        tls_key=request.tls_key,
        stall=request.stall,
    )
    try:
        users = (
            await asyncio.to_thread(Htpasswd.load, request.htpasswd) if request.htpasswd else None
        )
        gate = users.check if users is not None else None
        app = make_app(content, push=pushes, gate=gate, stall=request.stall)
        await run_server(app, settings, ready)
    finally:
        if writable is not None:
            await asyncio.shield(writable.close())
