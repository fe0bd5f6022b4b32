"""A registry far away, at the TCP level, for the estate benchmark: every byte is delivered
`delay` seconds after it arrived, each way (15 ms each way: a 30 ms round trip), with no cap on
throughput (a delay line, not a pause per chunk), and the HTTP request lines that went through
counted. Cheaper per request than an HTTP proxy, so at 100,000 requests it is the distance
that is measured, not the proxy. Its own process:

    python -m tests.bench_tcp_delay --listen 127.0.0.1:PORT --upstream 127.0.0.1:5000 \
        --delay 0.015 --count-file requests.txt

On SIGTERM it writes the number of requests to `--count-file` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.registry import free_port
from tests.support.tools import REPO

_CHUNK = 256 * 1024
_REQUEST_LINE_END = b" HTTP/1.1\r\n"


class Counter:
    """HTTP/1.1 request lines seen in the client-to-registry stream."""

    def __init__(self) -> None:
        self.requests = 0

    def feed(self, tail: bytes, chunk: bytes) -> bytes:
        """Count the request lines that end in `tail + chunk`; the new tail."""
        joined = tail + chunk
        self.requests += joined.count(_REQUEST_LINE_END)
        keep = len(_REQUEST_LINE_END) - 1
        # a match across the join is counted once: never keep a whole one in the tail
        return joined[-keep:] if len(joined) >= keep else joined


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    counter: Counter | None,
) -> None:
    """Deliver what `reader` gives to `writer`, each chunk `delay` after it arrived."""
    loop = asyncio.get_running_loop()
    line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    tail = b""

    async def deliver() -> None:
        while True:
            due, chunk = await line.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(_CHUNK):
            if counter is not None:
                tail = counter.feed(tail, chunk)
            line.put_nowait((loop.time() + delay, chunk))
        line.put_nowait((loop.time() + delay, b""))
        await delivering
    except (ConnectionError, OSError):
        pass
    finally:
        delivering.cancel()


async def _serve(listen: str, upstream: str, delay: float, count_file: Path | None) -> None:
    counter = Counter()
    up_host, _, up_port = upstream.rpartition(":")

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            _pump(client_r, server_w, delay, counter),
            _pump(server_r, client_w, delay, None),
            return_exceptions=True,
        )
        for w in (client_w, server_w):
            w.close()

    host, _, port = listen.rpartition(":")
    server = await asyncio.start_server(connection, host, int(port), backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    if count_file is not None:
        count_file.write_text(f"{counter.requests}\n")


class TcpDelay:
    """A running TCP delay process, the `host:port` it listens on, and its count file."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, count_file: Path) -> None:
        self.process = process
        self.host = host
        self.count_file = count_file

    def stop(self) -> int:
        """Stop it; the number of HTTP requests that went through."""
        self.process.terminate()
        self.process.wait(30)
        with contextlib.suppress(OSError, ValueError):
            return int(self.count_file.read_text())
        return -1


def start_tcp_delay(
    upstream: str, delay: float, count_file: Path, host: str | None = None
) -> TcpDelay:
    """Start a TCP delay line in front of `upstream` (on `host`, by default a free loopback
    port) and wait until it accepts connections."""
    host = host or f"127.0.0.1:{free_port()}"
    args = ["--listen", host, "--upstream", upstream, "--delay", str(delay)]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench_tcp_delay", *args, "--count-file", str(count_file)],
        cwd=REPO,
    )
    deadline = time.monotonic() + 20
    address = host.rpartition(":")
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((address[0], int(address[2])), 1),
        ):
            return TcpDelay(process, host, count_file)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the TCP delay in front of {upstream} did not start")


def main() -> None:
    """Command line: serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--upstream", required=True, help="host:port")
    parser.add_argument("--delay", type=float, default=0.015, help="seconds, each way")
    parser.add_argument("--count-file", type=Path)
    args = parser.parse_args()
    asyncio.run(_serve(args.listen, args.upstream, args.delay, args.count_file))


if __name__ == "__main__":
    main()
