"""Copying an image's referrers (signatures, SBOMs, attestations) along with it.

Referrers are found with the referrers API (`GET /v2/<name>/referrers/<digest>`) or, where a
registry lacks it (the CNCF distribution server does), the fallback tag `sha256-<hex>` whose
index lists them. At the destination each referrer manifest is stored by digest and the
fallback tag index is written (copied as-is when the source had one, so its digest is kept).
"""

from __future__ import annotations

import json

from mirror import mediatypes as mt
from mirror.digest import Digest
from mirror.endpoint import Endpoint
from mirror.engine import copy_image
from mirror.errors import MirrorError, NotFound
from mirror.httpbody import read_at_most
from mirror.layout import Layout
from mirror.model import Descriptor, Index, ManifestLike, parse_manifest
from mirror.registry import Repository

__all__ = ["copy_referrers", "fallback_tag", "list_referrers"]


def fallback_tag(digest: str) -> str:
    """The tag the referrers of `digest` are listed under without the API: `sha256-<hex>`."""
    checked = Digest(digest)
    return f"{checked.algorithm}-{checked.encoded}"


def _fallback_name(endpoint: Endpoint, digest: str, image_name: str | None) -> str:
    tag = fallback_tag(digest)
    if isinstance(endpoint, Layout) and image_name and ":" in image_name:
        return f"{image_name.rsplit(':', 1)[0]}:{tag}"
    return tag


async def _api(repo: Repository, digest: str) -> list[Descriptor] | None:
    try:
        resp = await repo.transport.request(
            "GET",
            f"/v2/{repo.name}/referrers/{Digest(digest)}",
            scopes=repo.pull,
            what=f"referrers of {repo.registry}/{repo.name}@{digest}",
            ok=(200, 400, 404, 405, 406),
            headers={"Accept": mt.OCI_INDEX},
        )
    except MirrorError:
        return None
    try:
        if resp.status != 200 or not resp.headers.get("Content-Type", "").startswith(mt.OCI_INDEX):
            return None
        index = parse_manifest(await read_at_most(resp, mt.MAX_MANIFEST_SIZE), mt.OCI_INDEX)
    finally:
        resp.release()
    return list(index.manifests) if isinstance(index, Index) else None


async def list_referrers(
    endpoint: Endpoint, digest: str, image_name: str | None = None
) -> tuple[list[Descriptor], Index | None]:
    """The referrers of `digest`, and the fallback index when that is where they came from."""
    if isinstance(endpoint, Repository):
        found = await _api(endpoint, digest)
        if found is not None:
            return found, None
    try:
        index = await endpoint.manifest_get(_fallback_name(endpoint, digest, image_name))
    except NotFound:
        return [], None
    if not isinstance(index, Index):
        return [], None
    return list(index.manifests), index


async def copy_referrers(
    src: Endpoint, dst: Endpoint, digest: str, dst_name: str | None, src_name: str | None = None
) -> int:
    """Copy the referrers of `digest` and their fallback tag index; return bytes moved."""
    referrers, fallback = await list_referrers(src, digest, src_name or dst_name)
    if not referrers:
        return 0
    moved = 0
    for desc in referrers:
        result = await copy_image(src, str(desc.digest), dst, None)
        moved += result.bytes_copied
    listing: ManifestLike = fallback or parse_manifest(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_INDEX,
                "manifests": [d.to_json() for d in referrers],
            },
            separators=(",", ":"),
        ).encode(),
        mt.OCI_INDEX,
    )
    await dst.image_put(listing, _fallback_name(dst, digest, dst_name))
    return moved
