"""`mirror serve` run as the user runs it: a subprocess on a free loopback port, its URL read
from what it prints, stopped by SIGTERM (which must end it with 0), raw HTTP requests
that no client library tidies up first, and the three kinds of source it serves, built."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mirror
from mirror.archive.bundle import create_bundle
from tests.support.tools import FIXTURES, amirror


@dataclass
class Served:
    """A running `mirror serve`: its `host:port`, its URL and its process."""

    host: str
    url: str
    process: subprocess.Popen[str]

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit code and what it wrote to stderr."""
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def start_serve(*args: str, env: dict[str, str] | None = None) -> Served:
    """Start `mirror serve --listen 127.0.0.1:0 ARGS…` and wait for its URL line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mirror", "serve", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("serving on "):
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"mirror serve did not start: {line!r} {err}")
    url = line.removeprefix("serving on ").strip()
    return Served(url.split("://", 1)[1], url, process)


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """A `mirror serve` for the block; SIGTERM after it must end the server with 0."""
    served = start_serve(*args, env=env)
    try:
        yield served
    finally:
        code, err = served.stop()
    assert code == 0, err


async def serve_refused(*args: str) -> str:
    """`mirror serve --listen 127.0.0.1:0 ARGS…` as users run it, which must exit 1 at start
    saying one line; that line."""
    done = await amirror("serve", "--listen", "127.0.0.1:0", *args)
    assert done.returncode == 1, done.stderr
    line, end, rest = done.stderr.partition("\n")
    assert (end, rest) == ("\n", ""), done.stderr
    return line


@dataclass(frozen=True)
class Answer:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def code(self) -> str:
        """The first error code of an error body."""
        return str(self.json()["errors"][0]["code"])


async def raw_request(
    host: str, method: str, path: str, headers: dict[str, str] | None = None
) -> Answer:
    """Send `METHOD PATH` exactly as written (no normalisation) and read the whole answer."""
    address, port = host.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(address, int(port))
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), parsed, body)


def pack_layout(layout: Path, out: Path) -> Path:
    """A plain tar of a layout directory (an oci-archive), mirror's own records left out."""
    with tarfile.open(out, "w") as tar:
        for path in sorted(layout.rglob("*")):
            if ".mirror" not in path.parts:
                tar.add(path, str(path.relative_to(layout)), recursive=False)
    return out


def build_sources(
    registry: str, root: Path, kinds: Iterable[str], layout_repo: str, bundle_repo: str
) -> dict[str, Path]:
    """Under `root`, from the fixtures' `<kind>:v1`: a layout naming `<layout_repo>/<kind>:v1`,
    an oci-archive of plain tags `<kind>`, and a bundle of `<bundle_repo>/<kind>:v1` made from
    the registry at host `registry`; their paths by `layout`, `archive` and `bundle`."""
    kinds = list(kinds)

    async def build() -> None:
        for kind in kinds:
            source = f"oci:{FIXTURES / kind}:v1"
            await mirror.copy(source, f"oci:{root / 'layout'}:{layout_repo}/{kind}:v1")
            await mirror.copy(source, f"oci:{root / 'plain'}:{kind}")
            await mirror.copy(source, f"docker://{registry}/{bundle_repo}/{kind}:v1")
        await create_bundle(
            root / "bundle.tar", [f"{registry}/{bundle_repo}/{kind}:v1" for kind in kinds]
        )

    asyncio.run(build())
    return {
        "layout": root / "layout",
        "archive": pack_layout(root / "plain", root / "plain.tar"),
        "bundle": root / "bundle.tar",
    }
