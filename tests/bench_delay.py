"""A registry at a distance, for `make bench`: a reverse proxy that holds every request for a
fixed delay (30 ms: a registry in another region) before forwarding it, streaming bodies both
ways, Authorization passed through and `Location` headers made relative (so uploads come back
through it). Run as its own process so it costs the tools under test no CPU of theirs:

    python -m tests.bench_delay --listen 127.0.0.1:PORT --upstream 127.0.0.1:5000 --delay 0.03

`start_delay_proxy` starts one and waits until it answers.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from tests.support.registry import free_port
from tests.support.scripted import HOP_BY_HOP
from tests.support.tools import REPO

_CHUNK = 1024 * 1024


def proxy_app(upstream: str, delay: float) -> web.Application:
    """The aiohttp application: wait `delay`, forward to `upstream`, stream the reply."""
    app = web.Application(client_max_size=1 << 40)
    sessions: list[aiohttp.ClientSession] = []

    async def on_startup(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        sessions.append(aiohttp.ClientSession(connector=connector, auto_decompress=False))

    async def on_cleanup(app: web.Application) -> None:
        await sessions[0].close()

    async def body(request: web.Request) -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(_CHUNK):
            yield chunk

    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )  # every Accept line kept: clients send several
        has_body = request.can_read_body
        async with sessions[0].request(
            request.method,
            f"http://{upstream}{request.path_qs}",
            headers=headers,
            data=body(request) if has_body else None,
            allow_redirects=False,
        ) as reply:
            out = CIMultiDict(
                (k, v) for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP
            )
            if "Location" in out and out["Location"].startswith("http"):
                out["Location"] = URL(out["Location"]).raw_path_qs
            response = web.StreamResponse(status=reply.status, headers=out)
            if reply.content_length is not None:
                response.content_length = reply.content_length
            await response.prepare(request)
            async for chunk in reply.content.iter_chunked(_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class DelayProxy:
    """A running delay proxy process and the `host:port` it listens on."""

    def __init__(self, process: subprocess.Popen[bytes], host: str) -> None:
        self.process = process
        self.host = host

    def stop(self) -> None:
        """Stop the process."""
        self.process.terminate()
        self.process.wait(10)


def start_delay_proxy(upstream: str, delay: float) -> DelayProxy:
    """Start a delay proxy in front of `upstream` (`host:port`) and wait until it answers."""
    host = f"127.0.0.1:{free_port()}"
    args = ["--listen", host, "--upstream", upstream, "--delay", str(delay)]
    process = subprocess.Popen([sys.executable, "-m", "tests.bench_delay", *args], cwd=REPO)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
                return DelayProxy(process, host)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the delay proxy in front of {upstream} did not start")


def main() -> None:
    """Command line: serve until terminated."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--upstream", required=True, help="host:port of the registry")
    parser.add_argument("--delay", type=float, default=0.03, help="seconds per request")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(
        proxy_app(args.upstream, args.delay),
        host=host,
        port=int(port),
        access_log=None,
        print=lambda *_: None,
    )


if __name__ == "__main__":
    main()
