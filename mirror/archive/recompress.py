"""Recompressing gzip layers to zstd inside a layout (opt-in: digests change).

Each gzip layer is decompressed and compressed again with zstd as it streams; the tar bytes
inside are unchanged, so the image config (whose `diff_ids` are digests of the uncompressed
tars) stays as it is. New manifests point at the new layers (OCI media types: Docker's have
no zstd), new indexes at the new manifests. Every change is reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles
import zstandard

from mirror.graph import walk_image
from mirror.layout import Layout
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest, DigestHasher
from mirror.oci.model import Descriptor, Index, Manifest, ManifestLike, parse_manifest
from mirror.support.fsutil import temp_name

__all__ = ["Recompressed", "recompress_image"]

_GZIP = frozenset({mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP})
_CHUNK = 1024 * 1024


@dataclass
class Recompressed:
    """The (possibly new) top descriptor and what changed: {"from", "to", "mediaType"}."""

    descriptor: Descriptor
    changes: list[dict[str, str]] = field(default_factory=list)


def _gzip_to_zstd(source: Path, target: Path) -> tuple[str, int]:
    """Stream-convert one layer file; return the new digest and size."""
    inflate = zlib.decompressobj(wbits=31)
    compress = zstandard.ZstdCompressor(level=3, threads=-1).compressobj()
    hasher = DigestHasher()
    with open(source, "rb") as src, open(target, "wb") as out:

        def emit(data: bytes) -> None:
            if data:
                out.write(data)
                hasher.update(data)

        while chunk := src.read(_CHUNK):
            emit(compress.compress(inflate.decompress(chunk)))
            while inflate.unconsumed_tail:
                emit(compress.compress(inflate.decompress(inflate.unconsumed_tail)))
        emit(compress.compress(inflate.flush()))
        emit(compress.flush())
        out.flush()
        os.fsync(out.fileno())
    return str(hasher.digest()), hasher.size


async def _store_file(layout: Layout, path: Path, desc: Descriptor) -> None:
    async def read(offset: int) -> AsyncGenerator[bytes, None]:
        async with aiofiles.open(path, "rb") as f:
            await f.seek(offset)
            while chunk := await f.read(_CHUNK):
                yield chunk

    await layout.blob_put(desc, read)


async def _layer(layout: Layout, desc: Descriptor, changes: list[dict[str, str]]) -> Descriptor:
    if desc.media_type not in _GZIP:
        return desc
    await layout.prepare_writes()
    tmp = layout.path / ".mirror" / "tmp" / temp_name("zstd")
    try:
        digest, size = await asyncio.to_thread(_gzip_to_zstd, layout.blob_path(desc.digest), tmp)
        new = Descriptor(mt.OCI_LAYER_ZSTD, Digest(digest), size, annotations=desc.annotations)
        await _store_file(layout, tmp, new)
    finally:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
    changes.append({"from": str(desc.digest), "to": str(new.digest), "mediaType": new.media_type})
    return new


@dataclass
class _Rewrite:
    """One recompression's state: what changed, and each manifest's rewrite (done once)."""

    changes: list[dict[str, str]] = field(default_factory=list)
    done: dict[Digest, ManifestLike] = field(default_factory=dict)


async def _rewrite(layout: Layout, manifest: ManifestLike, state: _Rewrite) -> ManifestLike:
    """The manifest with its gzip layers recompressed; each manifest is rewritten once."""
    if manifest.digest not in state.done:
        state.done[manifest.digest] = await _rewrite_once(layout, manifest, state)
    return state.done[manifest.digest]


async def _rewrite_once(layout: Layout, manifest: ManifestLike, state: _Rewrite) -> ManifestLike:
    changes = state.changes
    obj: dict[str, Any] = json.loads(manifest.raw)
    if isinstance(manifest, Manifest):
        layers = [await _layer(layout, layer, changes) for layer in manifest.layers]
        if all(new.digest == old.digest for new, old in zip(layers, manifest.layers, strict=True)):
            return manifest
        obj["mediaType"] = mt.OCI_MANIFEST
        config = manifest.config.to_json()
        if manifest.config.media_type == mt.DOCKER_CONFIG:
            config["mediaType"] = mt.OCI_CONFIG
        obj["config"] = config
        obj["layers"] = [layer.to_json() for layer in layers]
    else:
        assert isinstance(manifest, Index)
        children = []
        for child in manifest.manifests:
            old = await layout.manifest_by_descriptor(child)
            new = await _rewrite(layout, old, state)
            children.append(child if new.digest == old.digest else _child(child, new.descriptor()))
        if all(
            new.digest == old.digest for new, old in zip(children, manifest.manifests, strict=True)
        ):
            return manifest
        obj["mediaType"] = mt.OCI_INDEX
        obj["manifests"] = [c.to_json() for c in children]
    raw = json.dumps(obj, separators=(",", ":")).encode()
    new_manifest = parse_manifest(raw, obj["mediaType"])
    await layout.manifest_put(new_manifest)
    changes.append(
        {
            "from": str(manifest.digest),
            "to": str(new_manifest.digest),
            "mediaType": new_manifest.media_type,
        }
    )
    return new_manifest


def _child(old: Descriptor, new: Descriptor) -> Descriptor:
    return Descriptor(
        new.media_type,
        new.digest,
        new.size,
        old.urls,
        old.annotations,
        old.platform,
        old.artifact_type,
    )


async def recompress_image(layout: Layout, desc: Descriptor) -> Recompressed:
    """Recompress every gzip layer under `desc` to zstd; new manifests where needed."""
    manifest = await layout.manifest_by_descriptor(desc)
    # the walk bounds the graph (depth, size) before anything is rewritten
    await walk_image(manifest, layout.manifest_by_descriptor)
    state = _Rewrite()
    new = await _rewrite(layout, manifest, state)
    return Recompressed(new.descriptor(), state.changes)
