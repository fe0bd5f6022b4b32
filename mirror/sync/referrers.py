"""What is attached to an image a re-run finds up to date: has it changed since?

Asked for one request per image when nothing changed: the source's fallback tag `<alg>-<hex>`
by HEAD when the source lists it, else the source's referrers API; its digest is compared
with the destination's fallback tag (a HEAD there; a copy writes the source's index as it is,
or the same canonical index for an API's listing). Digest tags the source lists
(`<alg>-<hex>.sig`, `.att`, `.sbom`) are compared by HEAD on both sides. Referrers deeper in
the graph (a new signature on an SBOM) come along when the image's own listing changes.
"""

from __future__ import annotations

from collections.abc import Collection

from mirror.endpoint import Endpoint
from mirror.oci.attached import digest_tags, fallback_name, listing_index, prefix_of
from mirror.oci.digest import Digest
from mirror.registry import Repository

__all__ = ["attachments_changed"]


async def _source_listing(
    src: Endpoint, src_name: str | None, subject: Digest, source_tags: Collection[str]
) -> str | None:
    """The digest the destination's fallback tag should have, or None (nothing attached)."""
    fallback = fallback_name(src_name, subject)
    if fallback in source_tags:
        head = await src.manifest_head(fallback)
        return str(head.digest) if head else None
    if isinstance(src, Repository):
        found = await src.referrers_api(subject)
        return str(listing_index(found).digest) if found else None
    return None


async def attachments_changed(
    src: Endpoint,
    src_name: str | None,
    dst: Endpoint,
    dst_name: str | None,
    subject: Digest,
    source_tags: Collection[str],
    destination_tags: Collection[str] | None,
    *,
    with_digest_tags: bool,
) -> bool:
    """True when the source lists referrers or digest tags of `subject` that the
    destination's do not match (a copy of what is attached is then due)."""
    wanted = await _source_listing(src, src_name, subject, source_tags)
    if wanted is not None and await _differs(dst, fallback_name(dst_name, subject), wanted,
                                             destination_tags):  # fmt: skip
        return True
    if not with_digest_tags:
        return False
    for tag in digest_tags(subject):
        name = f"{prefix_of(src_name)}{tag}"
        if name not in source_tags:
            continue
        head = await src.manifest_head(name)
        if head and await _differs(
            dst, f"{prefix_of(dst_name)}{tag}", str(head.digest), destination_tags
        ):
            return True
    return False


async def _differs(
    dst: Endpoint, name: str, digest: str, destination_tags: Collection[str] | None
) -> bool:
    """True when the destination's `name` does not point at `digest`."""
    if destination_tags is not None and name.rsplit(":", 1)[-1] not in destination_tags:
        return True
    head = await dst.manifest_head(name)
    return head is None or str(head.digest) != digest
