"""The copy engine: one image from any endpoint to any other, every byte verified.

Plan: resolve the source, choose platforms, walk the manifest tree, collect each blob once.
Then: if the destination already has the same digest under the tag, stop. Otherwise copy the
missing blobs (largest first, bounded concurrency, cross-repository mount where possible),
then child manifests by digest, then the top manifest under its tag, so that no destination
ever names content it does not hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mirror.copy_options import CopyOptions, RangePolicy
from mirror.endpoint import (
    ImageDestination,
    ImageSource,
    InRegistry,
    RangedSink,
    RangedSource,
    Referrers,
    RemembersBlobs,
    Reuse,
)
from mirror.errors import ContentError, RegistryError
from mirror.events import ProgressSink, Silent
from mirror.graph import ImageGraph, ManifestBudget, fetch_from, walk_image
from mirror.oci.attached import fallback_name, listing_index
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, Manifest, ManifestLike
from mirror.oci.reference import RegistryReference
from mirror.selection import select_platforms
from mirror.support.tasks import together

if TYPE_CHECKING:
    from mirror.trust.admission import Admission
    from mirror.trust.policy import Policy

_log = logging.getLogger("mirror.engine")

__all__ = [
    "CopyOptions",
    "CopyResult",
    "CopyRun",
    "ProgressSink",
    "RangePolicy",
    "Silent",
    "copy_image",
]


@dataclass
class CopyResult:
    """What a copy did."""

    digest: str
    media_type: str
    up_to_date: bool = False
    digest_changed: bool = False
    source_digest: str = ""
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0
    #: bytes of blobs mounted from another repository instead of sent
    bytes_mounted: int = 0
    manifests_written: int = 0
    seconds: float = 0.0
    platforms: list[str] = field(default_factory=list)
    #: referrers listed at the destination (copied, or already there)
    referrers: int = 0
    #: every manifest of the graph walked (children, the top, referrers), in write order
    manifests: list[str] = field(default_factory=list)
    #: digest tags copied along (`sha256-<hex>.sig`, …)
    attached: list[str] = field(default_factory=list)
    #: the request budget each registry announced, as it stood at the end (host -> JSON)
    rate_limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: what admitted the image under the signature policy (None: no policy)
    admitted: Admission | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready report."""
        return {
            "digest": self.digest,
            "mediaType": self.media_type,
            "upToDate": self.up_to_date,
            "digestChanged": self.digest_changed,
            "sourceDigest": self.source_digest,
            "blobsCopied": self.blobs_copied,
            "blobsMounted": self.blobs_mounted,
            "blobsSkipped": self.blobs_skipped,
            "bytesCopied": self.bytes_copied,
            "bytesMounted": self.bytes_mounted,
            "manifestsWritten": self.manifests_written,
            "seconds": round(self.seconds, 3),
            "platforms": self.platforms,
            "referrers": self.referrers,
            "digestTags": self.attached,
            **({"rateLimits": self.rate_limits} if self.rate_limits else {}),
            **({"admittedBy": self.admitted.to_json()} if self.admitted else {}),
        }


#: error codes of a manifest PUT naming a blob the registry does not have
_BLOB_UNKNOWN = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"})

#: Into a destination repository seen empty, blobs up to this size go without a HEAD first:
#: the answer would be "missing", and resending a small blob costs little more than asking.
UNASKED_UPLOAD_LIMIT = 1024 * 1024
#: Blobs up to this size are latency-bound (a round trip costs more than their bytes): they
#: go at `small_concurrency`, beside the larger ones' `concurrency`.
SMALL_BLOB = 1024 * 1024


@dataclass(frozen=True)
class CopyRun:
    """What the caller of one copy knows of its run (plumbing, not options).

    `blob_gate`: the pool of large blob transfers shared by the run's images (else the copy
    makes its own of `options.concurrency`). `check_destination`: False when the caller has
    just seen the destination's tag (a sync), saving a request. `fresh_destination`: the
    caller has just seen the destination repository empty, so blobs up to
    UNASKED_UPLOAD_LIMIT bytes are sent without asking first. `source_tags`: the source's
    tags when the caller listed them (a copy with digest tags lists them once otherwise).
    `chosen_from`: the index an earlier copy chose this image's platform from (a bundle's
    image): what is attached to that index by digest tag is attached to this image too.
    `budget`: the manifests this copy may reach, shared with the copies of what is attached
    to the image (a fresh one of MAX_MANIFESTS when None). `identity`: the reference a
    signature policy judges the image by, when the source is not its registry (a bundle's
    image: where it was taken from); else the source repository's own.
    """

    blob_gate: asyncio.Semaphore | None = None
    check_destination: bool = True
    fresh_destination: bool = False
    source_tags: frozenset[str] | None = None
    chosen_from: str | None = None
    budget: ManifestBudget | None = None
    identity: RegistryReference | None = None


async def copy_image(
    src: ImageSource,
    src_ref: str | None,
    dst: ImageDestination,
    dst_tag: str | None,
    options: CopyOptions | None = None,
    *,
    run: CopyRun | None = None,
) -> CopyResult:
    """Copy one image (manifest, index and everything below) from `src` to `dst` as
    `options` say; with `options.referrers`, also what refers to any manifest of it, to any
    depth, listed at `dst` (its referrers API, or the fallback tag beside `dst_tag`) — for an
    image already up to date, only its referrers are walked. `run`: what the caller knows of
    the run this copy is part of. With `options.policy`, the image is admitted (or
    `Refused`) before anything is written.
    """
    started = time.monotonic()
    options = options or CopyOptions()
    run = run or CopyRun()
    sink = options.progress
    original = await src.manifest_get(src_ref)
    top = await select_platforms(src, original, options.platforms, options.single_must_match)
    result = CopyResult(
        digest=str(top.digest),
        media_type=top.media_type,
        digest_changed=top.digest != original.digest,
        source_digest=str(original.digest),
    )
    if options.policy is not None:
        result.admitted = await _admitted(src, src_ref, original, top, options.policy, run)
    # a caller that has just looked (sync) says so, saving a request per image
    existing = await dst.manifest_head(dst_tag) if dst_tag and run.check_destination else None
    result.up_to_date = existing is not None and existing.digest == top.digest
    if result.up_to_date and not options.referrers:
        result.seconds = time.monotonic() - started
        return result
    found: dict[Digest, Referrers] = {}

    async def referrers_of(manifest: ManifestLike) -> Sequence[Descriptor]:
        listed = await src.referrers(manifest.digest)
        if listed:
            found[manifest.digest] = listed
        return listed.descriptors

    plan = await walk_image(
        top,
        fetch_from(src),
        include_foreign=options.include_foreign,
        max_blob_size=options.max_blob_size,
        referrers=referrers_of if options.referrers else None,
        only_referrers=result.up_to_date,
        budget=run.budget,
    )
    result.manifests = [str(m.digest) for m in plan.manifests]
    result.platforms = [
        str(c.platform) for c in (top.manifests if isinstance(top, Index) else ()) if c.platform
    ]
    gate = run.blob_gate or asyncio.Semaphore(max(1, options.concurrency))
    gates = _Gates(gate, asyncio.Semaphore(max(1, options.small_concurrency)))
    unasked = UNASKED_UPLOAD_LIMIT if run.fresh_destination else -1
    await _copy_blobs(src, dst, plan, result, sink, gates, options.ranges, unasked)

    async def put(manifest: ManifestLike) -> None:
        if manifest is top:
            await dst.image_put(top, dst_tag)
        else:
            await dst.manifest_put(manifest)

    for manifest in plan.manifests:  # children first, referrers after their subjects
        try:
            await put(manifest)
        except RegistryError as exc:
            if not _BLOB_UNKNOWN & set(exc.codes) or not isinstance(manifest, Manifest):
                raise
            # the registry lost track of a blob it had taken (a race between concurrent
            # uploads or mounts of it): place what it lacks again, asking first, once
            _log.info("%s; placing its blobs again", exc)
            for blob in manifest.blobs():
                dst.forget_blob(blob)
            again = ImageGraph(manifest, blobs={b.digest: b for b in manifest.blobs()})
            await _copy_blobs(src, dst, again, result, sink, gates, options.ranges, -1)
            await put(manifest)
        result.manifests_written += 1
    for subject, listed in found.items():
        await list_referrers(dst, subject, listed, dst_tag)
        result.referrers += len(listed.descriptors)
    result.seconds = time.monotonic() - started
    return result


def source_identity(src: ImageSource, name: str | None) -> RegistryReference | None:
    """The reference of the image `name` in a registry source (None: not a registry)."""
    if not isinstance(src, InRegistry):
        return None
    if name and name.startswith(("sha256:", "sha512:")):
        return RegistryReference(src.registry, src.name, digest=Digest(name))
    return RegistryReference(src.registry, src.name, tag=name or "latest")


async def _admitted(
    src: ImageSource,
    name: str | None,
    original: ManifestLike,
    top: ManifestLike,
    policy: Policy,
    run: CopyRun,
) -> Admission:
    """The policy's decision on the image, before any of it moves: its signatures are
    looked for on the image read, the platform image chosen, the index it was chosen from."""
    from mirror.trust.admission import admit  # cryptography loads only with a policy

    image = run.identity or source_identity(src, name)
    digests = [original.digest, top.digest]
    if run.chosen_from:
        digests.append(Digest(run.chosen_from))
    shown = str(image) if image is not None else f"{name or 'the image'} ({original.digest})"
    return await admit(src, name, image, digests, policy, shown=shown)


async def list_referrers(
    dst: ImageDestination, subject: Digest, listed: Referrers, name: str | None = None
) -> bool:
    """Make `dst` list `listed` as referrers of `subject` (beside the image `name`), never
    dropping one it listed; True when its fallback tag was written.

    Nothing is written when `dst` lists them already (a registry with the referrers API
    indexes what was pushed). The source's own fallback index is written as it is (its
    digest kept, so a re-run compares digests) unless `dst` lists more, which is kept.
    """
    have = await dst.referrers(subject)
    if listed.digests <= have.digests:
        return False
    if listed.fallback is not None and have.digests <= listed.digests:
        index = listed.fallback
    else:
        extra = [d for d in listed.descriptors if d.digest not in have.digests]
        index = listing_index([*have.descriptors, *extra])
    await dst.image_put(index, fallback_name(name, subject))
    return True


@dataclass(frozen=True)
class _Gates:
    """How many blob transfers go at once: large ones, and small ones beside them."""

    large: asyncio.Semaphore
    small: asyncio.Semaphore


async def _copy_blobs(
    src: ImageSource,
    dst: ImageDestination,
    plan: ImageGraph,
    result: CopyResult,
    sink: ProgressSink,
    gates: _Gates,
    ranges: RangePolicy | None,
    unasked_up_to: int,
) -> None:
    """Place each blob of `plan` at `dst`: reused where the destination can (skipped,
    mounted), else sent; one image at a time per blob (the destination's turns)."""

    remembers = src if isinstance(src, RemembersBlobs) else None

    async def one(desc: Descriptor) -> None:
        async with gates.small if desc.size <= SMALL_BLOB else gates.large:
            try:
                async with dst.blob_turn(desc):
                    how = await placed(desc)
            except ContentError as exc:
                # the destination verifies what it stores: wrong bytes came from the source
                raise type(exc)(f"{_where(src, desc)} is damaged: {exc}") from None
            _log.info("%s %s (%d bytes)", how, desc.digest, desc.size)
            sink.blob_finished(desc, how)

    async def placed(desc: Descriptor) -> str:
        reused = await dst.reuse_blob(desc, src, ask=desc.size > unasked_up_to)
        if reused is Reuse.SKIPPED:
            result.blobs_skipped += 1
            return "skipped"
        if reused is Reuse.MOUNTED:
            result.blobs_mounted += 1
            result.bytes_mounted += desc.size
            return "mounted"
        sink.blob_started(desc)

        def source(offset: int) -> AsyncGenerator[bytes, None]:
            # the destination hashes everything it stores: read the source unhashed
            return _counted(src.blob_open(desc, offset, verify=False), desc, result, sink)

        ranged = ranges is not None and desc.size >= ranges.threshold
        if ranged and isinstance(src, RangedSource) and isinstance(dst, RangedSink):
            assert ranges is not None

            def fetch(start: int, end: int) -> AsyncGenerator[bytes, None]:
                return _counted(src.blob_range(desc, start, end), desc, result, sink)

            await dst.blob_put_ranged(
                desc, fetch, part_size=ranges.part_size, parallel=ranges.parallel, fallback=source
            )
        else:
            await dst.blob_put(desc, source)
        if remembers is not None:
            remembers.blob_verified(desc)
        result.blobs_copied += 1
        return "copied"

    ordered = sorted(plan.blobs.values(), key=lambda d: d.size, reverse=True)
    sink.image_planned(len(ordered), sum(d.size for d in ordered))
    await together(one(desc) for desc in ordered)


def _where(src: ImageSource, desc: Descriptor) -> str:
    """Where a source keeps a blob (a layout's file, a registry's blob URL), for errors."""
    describe = getattr(src, "describe_blob", None)
    return str(describe(desc.digest)) if describe is not None else f"blob {desc.digest}"


async def _counted(
    chunks: AsyncIterable[bytes], desc: Descriptor, result: CopyResult, sink: ProgressSink
) -> AsyncGenerator[bytes, None]:
    async for chunk in chunks:
        result.bytes_copied += len(chunk)
        sink.blob_advanced(desc, len(chunk))
        yield chunk
