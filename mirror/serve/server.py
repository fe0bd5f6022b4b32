"""The server: one aiohttp application over the served content, its middleware (the API
version header, the spec's error bodies, sign-in, one log line per request), bounds on
connections and requests, and the run until SIGTERM or SIGINT (requests in flight finish)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from mirror.errors import MirrorError
from mirror.serve import pull
from mirror.serve.answers import ApiError, error_response
from mirror.serve.content import Content
from mirror.serve.paths import Kind, parse_path

__all__ = ["ServeSettings", "make_app", "run_server"]

_log = logging.getLogger("mirror.serve")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: a writable layout's handler of push requests (POST, PUT, PATCH, DELETE), if any
PushHandler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
#: a sign-in check: returns when the request may go on, raises the 401 to answer otherwise
Gate = Callable[[web.Request], Awaitable[None]]


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens and what it bounds."""

    host: str = "127.0.0.1"
    port: int = 5000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: connections open at once; more are closed at once
    max_connections: int = 512
    #: requests answered at once; more get 429 TOOMANYREQUESTS
    max_requests: int = 256
    #: seconds an idle kept-alive connection stays open (at most `stall`)
    keepalive: float = 15.0
    #: seconds a client may take nothing (or send nothing) before it is cut off
    stall: float = 60.0
    #: seconds requests in flight get to finish after SIGTERM
    shutdown_grace: float = 30.0

    @property
    def url(self) -> str:
        """Where the server listens, as a URL."""
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def make_app(
    content: Content,
    *,
    push: PushHandler | None = None,
    gate: Gate | None = None,
    max_requests: int = 256,
    stall: float = 60.0,
) -> web.Application:
    """The application answering the distribution API from `content`."""
    in_flight = asyncio.Semaphore(max_requests)

    @web.middleware
    async def answers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if in_flight.locked():
                raise ApiError(429, "TOOMANYREQUESTS", "too many requests at once")
            async with in_flight:
                if gate is not None:
                    await gate(request)
                response = await handler(request)
        except ApiError as error:
            response = error_response(error)
        except MirrorError as exc:
            _log.warning("%s %s: %s", request.method, request.path, exc)
            response = error_response(ApiError(500, "UNKNOWN", str(exc)))
        except OSError as exc:  # the stored content could not be read (or written)
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            _log.warning("%s %s: %s", request.method, request.path, what)
            response = error_response(ApiError(500, "UNKNOWN", "the stored content is unreadable"))
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        _log.info("%s %s %s %d", request.remote, request.method, request.rel_url, response.status)
        return response

    async def dispatch(request: web.Request) -> web.StreamResponse:
        route = parse_path(request.rel_url.raw_path)
        method = request.method
        if method not in ("GET", "HEAD"):
            if push is None or route.kind in (Kind.BASE, Kind.CATALOG, Kind.TAGS, Kind.REFERRERS):
                raise ApiError(405, "UNSUPPORTED", "this registry is read-only")
            return await push(request, route)
        if route.kind is Kind.BASE:
            return await pull.base(request)
        if route.kind is Kind.CATALOG:
            return await pull.catalog(content, request)
        if route.kind is Kind.TAGS:
            return await pull.tags(content, request, route)
        if route.kind is Kind.MANIFEST:
            return await pull.manifest(content, request, route)
        if route.kind is Kind.BLOB:
            return await pull.blob(content, request, route, stall=stall)
        if route.kind is Kind.REFERRERS:
            return await pull.referrers(content, request, route)
        if push is not None:
            return await push(request, route)
        raise ApiError(405, "UNSUPPORTED", "this registry is read-only")

    app = web.Application(middlewares=[answers], client_max_size=1024**2 * 4 + 1024)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def _tls(settings: ServeSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise MirrorError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    return context


async def run_server(
    app: web.Application, settings: ServeSettings, ready: Callable[[str], None]
) -> None:
    """Serve `app` until cancelled (SIGTERM, SIGINT), then let requests in flight finish."""
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=min(settings.keepalive, settings.stall),
        shutdown_timeout=settings.shutdown_grace,
        handle_signals=False,
    )
    await runner.setup()
    try:
        _bound_connections(runner, settings.max_connections)
        site = web.TCPSite(
            runner, settings.host, settings.port, ssl_context=_tls(settings), backlog=128
        )
        try:
            await site.start()
        except OSError as exc:
            raise MirrorError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from None
        port = settings.port or int(runner.addresses[0][1])  # port 0: the one chosen
        ready(dataclasses.replace(settings, port=port).url)
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(runner.cleanup())


def _bound_connections(runner: web.AppRunner, limit: int) -> None:
    """Close a connection at once when `limit` are open already."""
    server = runner.server
    assert server is not None
    made = server.connection_made

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        made(handler, transport)
        if len(server.connections) > limit:
            transport.close()

    server.connection_made = connection_made  # type: ignore[method-assign]
