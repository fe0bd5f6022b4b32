"""The least a Python client can do for two benchmark cases: bare aiohttp, no checks.

    python -m tests.bench_floor pull HOST/REPO:TAG DIR   # (c): every blob to DIR, fsync'd
    python -m tests.bench_floor sync HOST/REPO HOST/REPO # first sync: each tag's image copied
    python -m tests.bench_floor upload FILE HOST/REPO    # one blob, POST + streamed PUT: prints
                                                         # the seconds the upload took

No verification, no retries, no existence checks, no layout: the same requests mirror must
make at the least, with the same concurrency (16). `make bench` runs it beside mirror and
skopeo to show how much of a case is the interpreter and the registry rather than mirror.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

ACCEPT = ",".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
CONCURRENCY = 16


def _store(data: bytes, digest: str, out: Path) -> None:
    tmp = out / f"{digest[7:19]}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / digest[7:])


async def pull(image: str, out: Path) -> None:
    """GET the manifest, then every blob (hashed, written, fsync'd and renamed)."""
    host, _, rest = image.partition("/")
    repo, _, tag = rest.rpartition(":")
    out.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:
        url = f"http://{host}/v2/{repo}"
        async with session.get(f"{url}/manifests/{tag}", headers={"Accept": ACCEPT}) as reply:
            manifest = json.loads(await reply.read())

        async def blob(digest: str) -> None:
            async with gate:
                async with session.get(f"{url}/blobs/{digest}") as reply:
                    data = await reply.read()
                hashlib.sha256(data).hexdigest()
                await asyncio.to_thread(_store, data, digest, out)

        blobs = [manifest["config"], *manifest["layers"]]
        await asyncio.gather(*(blob(b["digest"]) for b in blobs))


async def sync(source: str, destination: str) -> None:
    """List the source tags; per tag GET the manifest, per blob GET, POST and PUT, then PUT
    the manifest."""
    src_host, _, src_repo = source.partition("/")
    dst_host, _, dst_repo = destination.partition("/")
    src, dst = f"http://{src_host}/v2/{src_repo}", f"http://{dst_host}/v2/{dst_repo}"
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{src}/tags/list?n=1000") as reply:
            tags = (await reply.json())["tags"]

        async def blob(digest: str) -> None:
            async with session.get(f"{src}/blobs/{digest}") as reply:
                data = await reply.read()
            async with session.post(f"{dst}/blobs/uploads/") as reply:
                location = reply.headers["Location"]
            joiner = "&" if "?" in location else "?"
            async with session.put(
                f"{location}{joiner}digest={digest}",
                data=data,
                headers={"Content-Type": "application/octet-stream"},
            ) as reply:
                reply.raise_for_status()

        async def image(tag: str) -> None:
            async with gate:
                async with session.get(
                    f"{src}/manifests/{tag}", headers={"Accept": ACCEPT}
                ) as reply:
                    raw, media_type = await reply.read(), reply.headers["Content-Type"]
                manifest = json.loads(raw)
                blobs = [manifest["config"], *manifest["layers"]]
                await asyncio.gather(*(blob(b["digest"]) for b in blobs))
                async with session.put(
                    f"{dst}/manifests/{tag}", data=raw, headers={"Content-Type": media_type}
                ) as reply:
                    reply.raise_for_status()

        await asyncio.gather(*(image(t) for t in tags))


async def upload(path: Path, repository: str) -> None:
    """Upload one file as a blob the way a registry takes it fastest: a POST for a session,
    then the whole body streamed in one PUT (the floor of any push of that blob)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    digest = f"sha256:{hasher.hexdigest()}"

    async def body() -> AsyncIterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    started_at = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        host, _, name = repository.partition("/")
        async with session.post(f"http://{host}/v2/{name}/blobs/uploads/") as started:
            started.raise_for_status()
            location = started.headers["Location"]
        url = location if location.startswith("http") else f"http://{host}{location}"
        joiner = "&" if "?" in url else "?"
        async with session.put(
            f"{url}{joiner}digest={digest}",
            data=body(),
            headers={"Content-Length": str(path.stat().st_size)},
        ) as done:
            done.raise_for_status()
    print(f"{time.perf_counter() - started_at:.3f}")  # the upload alone, without the hashing


def main(argv: list[str]) -> None:
    """Run one case from the command line."""
    match argv:
        case ["pull", image, out]:
            asyncio.run(pull(image, Path(out)))
        case ["sync", source, destination]:
            asyncio.run(sync(source, destination))
        case ["upload", path, repository]:
            asyncio.run(upload(Path(path), repository))
        case _:
            raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
