"""Copying an image's referrers (signatures, SBOMs, attestations) along with it.

The source's referrers come from its endpoint (the referrers API, or the fallback tag
`<alg>-<hex>` whose index lists them). At the destination each referrer is stored by digest
and the fallback tag's index is written, listing what it listed before and what was copied.
"""

from __future__ import annotations

import json

from mirror.endpoint import Endpoint
from mirror.engine import copy_image
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, fallback_tag, parse_manifest

__all__ = ["copy_referrers", "fallback_name"]


def fallback_name(repository: str | None, subject: Digest) -> str:
    """The name of the fallback tag at an endpoint: the tag itself in a registry repository,
    `<repository>:<tag>` in a layout that holds many repositories."""
    tag = fallback_tag(subject)
    return f"{repository}:{tag}" if repository else tag


async def copy_referrers(
    src: Endpoint, dst: Endpoint, subject: Digest, dst_repository: str | None = None
) -> int:
    """Copy the referrers of `subject` and list them under the destination's fallback tag
    (`dst_repository` names it in a layout); return the bytes moved."""
    referrers = await src.referrers(subject)
    if not referrers:
        return 0
    moved = 0
    for desc in referrers:
        result = await copy_image(src, str(desc.digest), dst, None)
        moved += result.bytes_copied
    listed: dict[Digest, Descriptor] = {d.digest: d for d in await dst.referrers(subject)}
    for desc in referrers:
        listed.setdefault(desc.digest, desc)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [d.to_json() for d in listed.values()],
    }
    listing = parse_manifest(json.dumps(index, separators=(",", ":")).encode(), mt.OCI_INDEX)
    await dst.image_put(listing, fallback_name(dst_repository, subject))
    return moved
