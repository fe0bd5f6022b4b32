"""The one graph walk: each node once, write order, referrers at any depth, bounds."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from mirror.graph import GraphTooLarge, ManifestBudget, Node, walk, walk_image
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, ManifestLike, parse_manifest

LAYER = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(b"layer"), 5)
CONFIG = Descriptor(mt.OCI_CONFIG, Digest.of(b"{}"), 2)


def image(tag: str, subject: ManifestLike | None = None) -> ManifestLike:
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": CONFIG.to_json(),
        "layers": [LAYER.to_json()],
        "annotations": {"tag": tag},
    }
    if subject is not None:
        body["subject"] = subject.descriptor().to_json()
    return parse_manifest(json.dumps(body).encode(), mt.OCI_MANIFEST)


def index(*children: ManifestLike) -> ManifestLike:
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [c.descriptor().to_json() for c in children],
    }
    return parse_manifest(json.dumps(body).encode(), mt.OCI_INDEX)


class Store:
    """Manifests by digest, and referrers by subject digest."""

    def __init__(self, *manifests: ManifestLike) -> None:
        self.by_digest = {m.digest: m for m in manifests}
        self.fetched: list[Digest] = []

    async def fetch(self, desc: Descriptor) -> ManifestLike:
        self.fetched.append(desc.digest)
        return self.by_digest[desc.digest]

    async def referrers(self, manifest: ManifestLike) -> Sequence[Descriptor]:
        return [
            m.descriptor()
            for m in self.by_digest.values()
            if m.subject is not None and m.subject.digest == manifest.digest
        ]


async def test_three_levels_of_referrers_come_after_their_subjects() -> None:
    app = image("app")
    sbom = image("sbom", subject=app)
    signature = image("sig", subject=sbom)
    store = Store(app, sbom, signature)
    graph = await walk_image(app, store.fetch, referrers=store.referrers)
    assert [m.digest for m in graph.manifests] == [app.digest, sbom.digest, signature.digest]
    assert set(graph.blobs) == {LAYER.digest, CONFIG.digest}


async def test_an_index_children_are_written_before_it_and_each_is_fetched_once() -> None:
    one, two = image("one"), image("two")
    top = index(one, two, one)
    store = Store(top, one, two)
    graph = await walk_image(top, store.fetch)
    assert [m.digest for m in graph.manifests] == [one.digest, two.digest, top.digest]
    assert store.fetched == [one.digest, two.digest]


async def test_a_walk_refuses_a_chain_deeper_than_its_limit() -> None:
    chain = [image("base")]
    for _ in range(4):
        chain.append(index(chain[-1]))
    store = Store(*chain)
    with pytest.raises(GraphTooLarge, match="deeper than 3 levels"):
        await walk_image(chain[-1], store.fetch, max_depth=3)
    graph = await walk_image(chain[-1], store.fetch, max_depth=4)
    assert len(graph.manifests) == 5


async def test_a_walk_refuses_more_manifests_than_its_limit() -> None:
    children = [image(str(i)) for i in range(5)]
    top = index(*children)
    with pytest.raises(GraphTooLarge, match="more than 3 manifests"):
        await walk_image(top, Store(top, *children).fetch, budget=ManifestBudget(3))


async def test_a_visit_sees_blobs_as_leaves_and_where_each_was_met() -> None:
    app = image("app")
    met: list[tuple[str, bool]] = []

    async def visit(node: Node) -> ManifestLike | None:
        met.append((node.where, node.is_manifest))
        return app if node.is_manifest else None

    walked = await walk([Node(app.descriptor(), "root")], visit)
    assert met == [
        ("root", True),
        (f"child 0 of {app.digest}", False),
        (f"child 1 of {app.digest}", False),
    ]
    assert walked.seen == {app.digest, CONFIG.digest, LAYER.digest}
