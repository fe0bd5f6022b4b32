"""The walk of an image graph: an index's child manifests, a manifest's config and layers.

Registries, layouts and archives from elsewhere shape the graph, so the walk is bounded: each
manifest is visited once (a visited set, so cycles and diamonds cost nothing twice), nesting
deeper than `MAX_DEPTH` indexes is refused (the image spec's nesting is shallow: an index of
manifests, at most an index of indexes), and so is a graph of more than `MAX_MANIFESTS`
manifests. The walk is iterative, never recursive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from mirror.digest import Digest
from mirror.errors import ManifestInvalid
from mirror.limits import TIB
from mirror.model import Descriptor, Index, Manifest, ManifestLike

__all__ = ["MAX_DEPTH", "MAX_MANIFESTS", "ImageGraph", "walk_image"]

#: the deepest nesting of indexes below the top manifest that a walk follows
MAX_DEPTH = 8
#: the most manifests one image's graph may hold
MAX_MANIFESTS = 10_000

Fetch = Callable[[Descriptor], Awaitable[ManifestLike]]


@dataclass
class ImageGraph:
    """An image as a copy needs it: the top manifest, every manifest below it once, children
    before their parents (the order they must be written in), and the blobs they name."""

    top: ManifestLike
    children: list[ManifestLike] = field(default_factory=list)
    blobs: dict[Digest, Descriptor] = field(default_factory=dict)

    @property
    def manifests(self) -> list[ManifestLike]:
        """Every manifest of the graph, the top one last."""
        return [*self.children, self.top]


def _child_manifests(manifest: ManifestLike) -> Iterator[Descriptor]:
    return iter(manifest.manifests if isinstance(manifest, Index) else ())


async def walk_image(
    top: ManifestLike,
    fetch: Fetch,
    *,
    include_foreign: bool = True,
    max_depth: int = MAX_DEPTH,
    max_manifests: int = MAX_MANIFESTS,
    max_blob_size: int = TIB,
) -> ImageGraph:
    """Every manifest and blob below `top`, each once; `fetch` reads a child manifest.

    Foreign layers (non-distributable, with URLs) are left out unless `include_foreign`.
    Raises ManifestInvalid when the graph nests too deep, holds too many manifests, or names
    a blob larger than `max_blob_size` (refused before anything is fetched or allocated).
    """
    graph = ImageGraph(top)
    seen: set[Digest] = {top.digest}

    def add_blobs(manifest: ManifestLike) -> None:
        if not isinstance(manifest, Manifest):
            return
        for blob in manifest.blobs():
            if blob.size > max_blob_size:
                raise ManifestInvalid(
                    f"manifest {manifest.digest} names blob {blob.digest} of {blob.size} "
                    f"bytes, over the {max_blob_size} byte limit"
                )
            if include_foreign or not blob.is_foreign:
                graph.blobs.setdefault(blob.digest, blob)

    add_blobs(top)
    stack: list[tuple[ManifestLike, Iterator[Descriptor]]] = [(top, _child_manifests(top))]
    while stack:
        node, pending = stack[-1]
        desc = next(pending, None)
        if desc is None:
            stack.pop()
            if stack:
                graph.children.append(node)
            continue
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        if len(stack) > max_depth:
            raise ManifestInvalid(
                f"index {node.digest} nests manifests deeper than {max_depth} levels"
            )
        if len(seen) > max_manifests:
            raise ManifestInvalid(f"image {top.digest} holds more than {max_manifests} manifests")
        child = await fetch(desc)
        add_blobs(child)
        stack.append((child, _child_manifests(child)))
    return graph
