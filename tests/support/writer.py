"""A separate process that writes into a layout, for crash and concurrency tests.

python -m tests.support.writer big DIR SEED SIZE DIGEST   # one big layer + manifest + tag
python -m tests.support.writer tags DIR PREFIX COUNT      # COUNT names for the fixture image
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

from fixtures.generate import random_chunks
from mirror.endpoint import BlobSource
from mirror.layout import Layout
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, parse_manifest
from tests.support.layouts import copy_tree
from tests.support.tools import FIXTURES


def _source(seed: int, size: int) -> BlobSource:
    async def read(offset: int) -> AsyncGenerator[bytes, None]:
        print(f"asked {offset}", flush=True)
        skip = offset
        for chunk in random_chunks(seed, size):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            yield chunk[skip:]
            skip = 0

    return read


async def write_big(root: Path, seed: int, size: int, digest: str) -> None:
    """Write one large layer, its config and manifest, then name the image `big`."""
    async with await Layout.open(root, create=True) as layout:
        layer = Descriptor(mt.OCI_LAYER_TAR, Digest(digest), size)
        await layout.blob_put(layer, _source(seed, size))
        config = await layout.blob_put_bytes(
            json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [digest]},
                }
            ).encode(),
            mt.OCI_CONFIG,
        )
        body = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json()],
        }
        await layout.image_put(parse_manifest(json.dumps(body).encode()), "big")


async def write_tags(root: Path, prefix: str, count: int) -> None:
    """Copy the oci-single fixture in and give it `count` names `<prefix>-<i>`."""
    async with (
        await Layout.open(FIXTURES / "oci-single") as src,
        await Layout.open(root, create=True) as dst,
    ):
        manifest = await src.manifest_get("v1")
        await copy_tree(src, manifest, dst)
        for i in range(count):
            await dst.add_image(manifest.descriptor(), f"{prefix}-{i}")


def main(argv: list[str]) -> None:
    """Dispatch on the first argument."""
    if argv[0] == "big":
        asyncio.run(write_big(Path(argv[1]), int(argv[2]), int(argv[3]), argv[4]))
    elif argv[0] == "tags":
        asyncio.run(write_tags(Path(argv[1]), argv[2], int(argv[3])))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
