"""Copying an image with everything attached to it: its referrers, to any depth (the copy
engine walks them), and cosign-style digest tags (`sha256-<hex>.sig`, `.att`, `.sbom`) beside
any manifest of it, each copied the same way, as `regctl image copy --referrers --digest-tags`
does. Each manifest's digest tags are looked at once (a visited set bounds the chain).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mirror.endpoint import Endpoint
from mirror.engine import CopyResult, copy_image
from mirror.graph import MAX_MANIFESTS
from mirror.oci.attached import digest_tags, prefix_of
from mirror.oci.digest import Digest

__all__ = ["copy_attached"]


async def copy_attached(
    src: Endpoint,
    src_ref: str | None,
    dst: Endpoint,
    dst_tag: str | None,
    *,
    referrers: bool = True,
    with_digest_tags: bool = True,
    source_tags: Collection[str] | None = None,
    **copy_options: Any,
) -> CopyResult:
    """Copy one image as `copy_image` does, then its referrers (with `referrers`) and the
    digest tags found beside any of its manifests (with `with_digest_tags`), recursively.

    `source_tags`: the source's tags (or layout names) when the caller has listed them;
    otherwise they are listed here, once. The result is the image's own copy, with the
    bytes and referrers of what came along added.
    """
    result = await copy_image(src, src_ref, dst, dst_tag, referrers=referrers, **copy_options)
    if not with_digest_tags:
        return result
    tags = set(source_tags) if source_tags is not None else {t async for t in src.tags()}
    src_prefix, dst_prefix = prefix_of(src_ref), prefix_of(dst_tag)
    seen: set[str] = set()
    pending = [*result.manifests, result.source_digest, result.digest]
    copy_options.pop("check_destination", None)
    while pending and len(seen) < MAX_MANIFESTS:
        digest = pending.pop()
        if not digest or digest in seen:
            continue
        seen.add(digest)
        for tag in digest_tags(Digest(digest)):
            if f"{src_prefix}{tag}" not in tags:
                continue
            attached = await copy_image(
                src,
                f"{src_prefix}{tag}",
                dst,
                f"{dst_prefix}{tag}",
                referrers=referrers,
                check_destination=True,
                **copy_options,
            )
            result.bytes_copied += attached.bytes_copied
            result.referrers += attached.referrers
            result.attached.append(tag)
            pending += [*attached.manifests, attached.digest]
    return result
