"""Helpers that put images into layouts through mirror's library (layout to layout)."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from mirror.graph import walk_image
from mirror.layout import Layout
from mirror.oci.model import ManifestLike


async def copy_tree(src: Layout, manifest: ManifestLike, dst: Layout) -> None:
    """Copy every blob and manifest of the graph of `manifest` from `src` into `dst`: blobs
    first, then the manifests children first (mirror's graph walk, without its copy engine)."""
    graph = await walk_image(manifest, src.manifest_by_descriptor)
    for blob in graph.blobs.values():
        await dst.blob_put(blob, partial(src.blob_open, blob))
    for each in graph.manifests:
        await dst.manifest_put(each)


async def copy_image(src_dir: Path, ref: str, dst_dir: Path, name: str | None) -> ManifestLike:
    """Copy image `ref` of the layout at `src_dir` into `dst_dir` (created) under `name`."""
    async with await Layout.open(src_dir) as src, await Layout.open(dst_dir, create=True) as dst:
        manifest = await src.manifest_get(ref)
        await copy_tree(src, manifest, dst)
        await dst.add_image(manifest.descriptor(), name)
        return manifest


async def archive_problems(archive: Path, work: Path) -> list[str]:
    """Every way an archive mirror wrote fails `layout verify --strict` (the image spec's
    requirements and every byte), unpacked into `work`."""
    from mirror.archive.unpack import unpack_layout
    from mirror.layout import verify

    await asyncio.to_thread(unpack_layout, archive, work)
    async with await Layout.open(work) as layout:
        return [str(p) for p in await verify(layout, strict=True)]
