"""`serve`: the sources opened, the application made, the server run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mirror.errors import InvalidReference
from mirror.oci.reference import is_valid_repository
from mirror.serve.content import Content
from mirror.serve.server import ServeSettings, make_app, run_server
from mirror.serve.sources import open_sources

__all__ = ["ServeRequest", "serve"]


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


async def serve(request: ServeRequest, ready: Callable[[str], None]) -> None:
    """Serve until cancelled; `ready` is told the URL once the server listens."""
    if request.repository is not None and not is_valid_repository(request.repository):
        raise InvalidReference(f"--repository {request.repository!r} is not a repository name")
    sources = await open_sources(request.sources, request.repository)
    content = Content(sources)
    settings = ServeSettings(
        request.host, request.port, tls_cert=request.tls_cert, tls_key=request.tls_key
    )
    await run_server(make_app(content), settings, ready)
