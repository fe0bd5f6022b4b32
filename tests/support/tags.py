"""Many tagged images put straight into a registry over HTTP (thousands in seconds): every
manifest different (an annotation), all sharing one config and one small gzip layer."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterator

import aiohttp

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def tar_of_one_file(name: str, chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """A tar stream holding one regular file of `size` bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    yield info.tobuf(tarfile.PAX_FORMAT)
    yield from chunks
    if size % tarfile.BLOCKSIZE:
        yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


async def put_tags(
    host: str, repos: int, tags: int, prefix: str, *, label: str | None = None
) -> None:
    """`repos` repositories of `tags` tags each; every manifest differs (an annotation, made
    of `label` — by default `prefix` — the repository's number and the tag's) and all share
    one config and one small gzip layer. The same `label` under two prefixes (or in two
    registries) makes the same manifests: a mirror already up to date."""
    layer_raw = io.BytesIO()
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    tar = b"".join(tar_of_one_file("hello.txt", iter([b"hello\n"]), 6))
    layer_raw.write(deflate.compress(tar) + deflate.flush())
    layer = layer_raw.getvalue()
    config = json.dumps(
        {"architecture": "amd64", "os": "linux",
         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]}}
    ).encode()  # fmt: skip
    blobs = {f"sha256:{hashlib.sha256(b).hexdigest()}": b for b in (layer, config)}
    base = f"http://{host}/v2"
    gate = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as session:

        async def repository(r: int) -> None:
            name = f"{prefix}/r{r:03d}"
            async with gate:  # the two tiny blobs uploaded to each (mounts race in distribution)
                for digest, data in blobs.items():
                    async with session.post(f"{base}/{name}/blobs/uploads/") as started:
                        location = started.headers["Location"]
                    url = location if location.startswith("http") else f"http://{host}{location}"
                    joiner = "&" if "?" in url else "?"
                    async with session.put(f"{url}{joiner}digest={digest}", data=data) as done:
                        assert done.status == 201, await done.text()
            await asyncio.gather(*(tag(name, t) for t in range(tags)))

        async def tag(name: str, t: int) -> None:
            annotation = f"{label}{name.removeprefix(prefix)}:{t}" if label else f"{name}:{t}"
            manifest = {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                           "digest": f"sha256:{hashlib.sha256(config).hexdigest()}"},
                "layers": [{"mediaType": DOCKER_LAYER_GZIP, "size": len(layer),
                            "digest": f"sha256:{hashlib.sha256(layer).hexdigest()}"}],
                "annotations": {"tag": annotation},
            }  # fmt: skip
            async with (
                gate,
                session.put(
                    f"{base}/{name}/manifests/v{t:02d}",
                    data=json.dumps(manifest).encode(),
                    headers={"Content-Type": DOCKER_MANIFEST},
                ) as put,
            ):
                assert put.status == 201, await put.text()

        await asyncio.gather(*(repository(r) for r in range(repos)))


def many_tags(
    host: str, repos: int, tags: int, prefix: str = "grow", *, label: str | None = None
) -> None:
    """Put `repos` x `tags` tagged images into the registry at `host` (plain HTTP)."""
    asyncio.run(put_tags(host, repos, tags, prefix, label=label))
