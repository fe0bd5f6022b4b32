"""`mirror serve` against slow, idle and greedy clients: a connection that sends nothing, or
its headers a byte at a time, is closed after `--stall-timeout`; a client that stops reading
a blob is cut off; connections beyond the bound are closed at once; the server goes on
answering everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest

from fixtures.generate import make_big_image
from tests.support.serving import Served, raw_request, serving

MiB = 1024 * 1024
STALL = 2.0


async def _closed_after(host: str, trickle: bytes | None) -> float:
    """Seconds until the server closes a connection that sends nothing (or `trickle`, a
    byte each 0.2 s, never finishing its headers)."""
    address, port = host.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(address, int(port))
    started = time.monotonic()
    try:
        while time.monotonic() - started < 30:
            if trickle is not None:
                writer.write(trickle[:1])
                trickle = trickle[1:] or b"X"
                await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1024), 0.2) == b"":
                    break
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


@pytest.fixture
def big_layout(tmp_path: Path) -> Path:
    """A layout of one image with a 64 MiB layer, its plain tag `v1`."""
    make_big_image(tmp_path / "big", "v1", 1, 64 * MiB, seed=3)
    return tmp_path / "big"


def _serve(layout: Path) -> contextlib.AbstractContextManager[Served]:
    return serving("--stall-timeout", str(STALL), "--repository", "big", f"oci:{layout}")


async def test_idle_and_trickling_connections_are_closed_after_the_stall_timeout(
    big_layout: Path,
) -> None:
    with _serve(big_layout) as served:
        idle, trickling = await asyncio.gather(
            _closed_after(served.host, None),
            _closed_after(served.host, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: "),
        )
        assert STALL - 0.5 < idle < STALL + 3
        assert STALL - 0.5 < trickling < STALL + 3
        assert (await raw_request(served.host, "GET", "/v2/")).status == 200


async def test_a_client_that_stops_reading_a_blob_is_cut_off(big_layout: Path) -> None:
    index = json.loads((big_layout / "index.json").read_text())
    top = index["manifests"][0]["digest"].split(":")[1]
    layer = json.loads((big_layout / "blobs" / "sha256" / top).read_text())["layers"][0]
    with _serve(big_layout) as served:
        address, port = served.host.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(address, int(port), limit=MiB)
        writer.write(f"GET /v2/big/blobs/{layer['digest']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(STALL * 3)  # read nothing: the server's slice cannot leave
        received = 0
        try:
            while chunk := await asyncio.wait_for(reader.read(MiB), 10):
                received += len(chunk)
        except ConnectionError:
            pass
        writer.close()
        assert received < layer["size"]
        assert (await raw_request(served.host, "GET", "/v2/")).status == 200


async def test_connections_beyond_the_bound_are_closed_at_once(big_layout: Path) -> None:
    with _serve(big_layout) as served:
        address, port = served.host.rsplit(":", 1)
        opened = [await asyncio.open_connection(address, int(port)) for _ in range(530)]
        closed = 0
        for reader, _ in opened[-30:]:
            try:
                if await asyncio.wait_for(reader.read(1), 1) == b"":
                    closed += 1
            except TimeoutError:
                pass
        for _, writer in opened:
            writer.close()
        assert closed >= 15
        await asyncio.sleep(0.5)
        assert (await raw_request(served.host, "GET", "/v2/")).status == 200
