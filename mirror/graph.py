"""The one walk of image graphs: an index's child manifests, a manifest's config and layers,
and (when asked) each manifest's referrers.

Registries, layouts and archives from elsewhere shape the graph, so the walk is bounded: each
descriptor is visited once (a visited set, so cycles and diamonds cost nothing twice), a
manifest deeper than `MAX_DEPTH` levels below a root is refused (the image spec's nesting is
shallow: an index of manifests, at most an index of indexes, and a few referrers on top), and
so is a graph of more than `MAX_MANIFESTS` manifests. The walk is iterative, never recursive.

`walk` is the walk itself; what a visit does (fetch and parse, check a file, record a blob) is
the caller's. `walk_image` is the walk a copy needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mirror.endpoint import ImageSource
from mirror.errors import ManifestInvalid
from mirror.limits import TIB
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, Manifest, ManifestLike

__all__ = [
    "MAX_DEPTH",
    "MAX_MANIFESTS",
    "GraphTooLarge",
    "ImageGraph",
    "ManifestBudget",
    "Node",
    "Walked",
    "fetch_from",
    "walk",
    "walk_image",
]

#: the deepest a manifest may sit below the root of a walk (index children and referrers)
MAX_DEPTH = 8
#: the most manifests one walk may reach
MAX_MANIFESTS = 10_000


class GraphTooLarge(ManifestInvalid):
    """A graph nests deeper or holds more manifests than a walk follows."""


@dataclass(frozen=True)
class Node:
    """A descriptor met on a walk, where it was met (for messages), and how deep."""

    desc: Descriptor
    where: str
    depth: int = 0
    #: False for a blob a manifest names (config, layer); True for what an index lists
    is_manifest: bool = True


#: reads a node: the manifest to walk below it, or None (a blob, or nothing to follow)
Visit = Callable[[Node], Awaitable[ManifestLike | None]]
#: the referrers of a manifest (signatures, SBOMs, attestations whose subject it is)
Referrers = Callable[[ManifestLike], Awaitable[Sequence[Descriptor]]]


@dataclass
class Walked:
    """What a walk reached: every digest once, and the manifests in write order (a manifest's
    children before it, its referrers after it)."""

    seen: set[Digest] = field(default_factory=set)
    manifests: list[ManifestLike] = field(default_factory=list)


def _children(manifest: ManifestLike, depth: int) -> Iterator[Node]:
    for i, child in enumerate(manifest.children):
        where = f"child {i} of {manifest.digest}"
        yield Node(child, where, depth + 1, is_manifest=isinstance(manifest, Index))


def _referrer_nodes(
    subject: ManifestLike, found: Sequence[Descriptor], depth: int
) -> Iterator[Node]:
    for desc in found:
        yield Node(desc, f"referrer of {subject.digest}", depth + 1)


class ManifestBudget:
    """How many manifests one piece of work may reach in all: a walk spends from it, and
    the copies of what is attached to an image (digest tags, hop after hop) spend from the
    image's, so no hop starts a fresh bound."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_MANIFESTS if limit is None else limit
        self.spent = 0

    def spend(self, where: str) -> None:
        """Count one more manifest reached at `where`; GraphTooLarge past the limit."""
        self.spent += 1
        if self.spent > self.limit:
            raise GraphTooLarge(f"{where}: the graph holds more than {self.limit} manifests")


async def walk(
    roots: Iterable[Node],
    visit: Visit,
    *,
    referrers: Referrers | None = None,
    max_depth: int = MAX_DEPTH,
    budget: ManifestBudget | None = None,
) -> Walked:
    """Visit every descriptor reachable from `roots` once, depth first; `visit` reads each.

    Raises GraphTooLarge (before visiting it) for a manifest deeper than `max_depth`, or when
    the manifests reached overdraw `budget` (a fresh one of MAX_MANIFESTS when None).
    """
    walked = Walked()
    budget = budget or ManifestBudget()
    # a frame: the manifest whose children are pending (None for a list of roots or
    # referrers, which is not itself written), its depth, and the nodes still to visit
    stack: list[tuple[ManifestLike | None, int, Iterator[Node]]] = [(None, -1, iter(roots))]
    while stack:
        owner, depth, pending = stack[-1]
        node = next(pending, None)
        if node is None:
            stack.pop()
            if owner is not None:
                walked.manifests.append(owner)
                if referrers is not None and (found := await referrers(owner)):
                    stack.append((None, depth, _referrer_nodes(owner, found, depth)))
            continue
        if node.desc.digest in walked.seen:
            continue
        if node.is_manifest and node.depth > max_depth:
            raise GraphTooLarge(f"{node.where}: manifests nest deeper than {max_depth} levels")
        walked.seen.add(node.desc.digest)
        manifest = await visit(node)
        if manifest is None:
            continue
        budget.spend(node.where)
        stack.append((manifest, node.depth, _children(manifest, node.depth)))
    return walked


@dataclass
class ImageGraph:
    """An image as a copy needs it: the top manifest, every manifest below it (and its
    referrers, when asked) once in the order they must be written, and the blobs they name."""

    top: ManifestLike
    manifests: list[ManifestLike] = field(default_factory=list)
    blobs: dict[Digest, Descriptor] = field(default_factory=dict)

    @property
    def children(self) -> list[ManifestLike]:
        """Every manifest of the graph but the top one, in write order."""
        return [m for m in self.manifests if m is not self.top]


Fetch = Callable[[Descriptor], Awaitable[ManifestLike]]


def fetch_from(endpoint: ImageSource) -> Fetch:
    """The Fetch that reads manifests by digest from `endpoint`."""

    async def fetch(desc: Descriptor) -> ManifestLike:
        return await endpoint.manifest_get(str(desc.digest))

    return fetch


async def walk_image(
    top: ManifestLike,
    fetch: Fetch,
    *,
    include_foreign: bool = True,
    referrers: Referrers | None = None,
    max_depth: int = MAX_DEPTH,
    budget: ManifestBudget | None = None,
    max_blob_size: int = TIB,
    only_referrers: bool = False,
) -> ImageGraph:
    """Every manifest and blob below `top` (and its referrers' graphs), each once; `fetch`
    reads a manifest. `only_referrers`: the graphs of top's referrers alone (top is known to
    be in place), so `manifests` does not hold top.

    Foreign layers (non-distributable, with URLs) are left out unless `include_foreign`.
    Raises ManifestInvalid when the graph nests too deep, holds too many manifests, or names
    a blob larger than `max_blob_size` (refused before anything is fetched or allocated).
    """
    graph = ImageGraph(top)
    sizes_checked: set[Digest] = set()

    def check_sizes(manifest: ManifestLike) -> None:
        # all of a manifest's blobs at once, before any of them is visited
        if isinstance(manifest, Manifest) and manifest.digest not in sizes_checked:
            sizes_checked.add(manifest.digest)
            for blob in manifest.blobs():
                if blob.size > max_blob_size:
                    raise ManifestInvalid(
                        f"manifest {manifest.digest} names blob {blob.digest} of {blob.size} "
                        f"bytes, over the {max_blob_size} byte limit"
                    )

    async def visit(node: Node) -> ManifestLike | None:
        if node.depth == 0:
            manifest = top
        elif not node.is_manifest:
            if include_foreign or not node.desc.is_foreign:
                graph.blobs.setdefault(node.desc.digest, node.desc)
            return None
        else:
            manifest = await fetch(node.desc)
        check_sizes(manifest)
        return manifest

    roots = [Node(top.descriptor(), f"image {top.digest}")]
    if only_referrers:
        listed = await referrers(top) if referrers is not None else ()
        roots = [Node(d, f"referrer of {top.digest}", 1) for d in listed]
        check_sizes(top)
    walked = await walk(
        roots,
        visit,
        referrers=referrers,
        max_depth=max_depth,
        budget=budget,
    )
    graph.manifests = walked.manifests
    return graph
