"""Copying an image with everything attached to it: its referrers, to any depth (the copy
engine walks them), and cosign-style digest tags (`sha256-<hex>.sig`, `.att`, `.sbom`) beside
any manifest of it, each copied the same way, as `regctl image copy --referrers --digest-tags`
does. Each manifest's digest tags are looked at once (a visited set bounds the chain).
What is attached is copied with `CopyOptions.for_attached()`: no platform filter.
"""

from __future__ import annotations

from dataclasses import replace

from mirror.copy_options import CopyOptions
from mirror.endpoint import ImageDestination, ImageSource
from mirror.engine import CopyResult, CopyRun, copy_image
from mirror.graph import MAX_MANIFESTS, ManifestBudget
from mirror.oci.attached import digest_tags, prefix_of
from mirror.oci.digest import Digest

__all__ = ["copy_attached"]


async def copy_attached(
    src: ImageSource,
    src_ref: str | None,
    dst: ImageDestination,
    dst_tag: str | None,
    options: CopyOptions | None = None,
    *,
    run: CopyRun | None = None,
) -> CopyResult:
    """Copy one image as `copy_image` does, then (with `options.referrers` and
    `options.digest_tags`) the digest tags found beside any of its manifests, recursively.

    The source's tags are `run.source_tags` when the caller has listed them; otherwise they
    are listed here, once. The result is the image's own copy, with the bytes and referrers
    of what came along added.
    """
    options = options or CopyOptions()
    run = run or CopyRun()
    if run.budget is None:  # one bound for the image and everything attached to it
        run = replace(run, budget=ManifestBudget())
    result = await copy_image(src, src_ref, dst, dst_tag, options, run=run)
    if not (options.referrers and options.digest_tags):
        return result
    tags = run.source_tags
    if tags is None:
        tags = frozenset([t async for t in src.tags()])
    src_prefix, dst_prefix = prefix_of(src_ref), prefix_of(dst_tag)
    attached_options = options.for_attached()
    attached_run = replace(run, check_destination=True)
    seen: set[str] = set()
    pending = [*result.manifests, result.source_digest, result.digest, run.chosen_from or ""]
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
                attached_options,
                run=attached_run,
            )
            result.bytes_copied += attached.bytes_copied
            result.referrers += attached.referrers
            result.attached.append(tag)
            pending += [*attached.manifests, attached.digest]
    return result
