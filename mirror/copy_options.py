"""`CopyOptions`: everything that decides what a copy does, in one frozen value.

Built once — from `RegistryOptions` and the caller's choices, by the CLI, a sync run, a bundle
or the library — and passed whole to `copy_image`. What is attached to an image (signatures,
SBOMs, digest tags) is copied with `for_attached()`, a derivation without the platform filter:
a signature has no platform. Per-run plumbing (shared gates, what the caller has just seen of
the destination) is not an option: it is the engine's `CopyRun`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mirror.events import ProgressSink, Silent
from mirror.limits import TIB
from mirror.oci.platform import Platform

if TYPE_CHECKING:  # the registry options are read, never imported at run time from here
    from mirror.registry.options import RegistryOptions
    from mirror.trust.policy import Policy

__all__ = ["CopyOptions", "RangePolicy"]


@dataclass(frozen=True)
class RangePolicy:
    """When and how to fetch a blob as parallel ranges (registry to layout)."""

    threshold: int = 256 * 1024 * 1024
    part_size: int = 16 * 1024 * 1024
    parallel: int = 4


@dataclass(frozen=True, kw_only=True)
class CopyOptions:
    """What a copy does, whatever its source and destination.

    `platforms`: of an index, copy only these (one: that image alone under the tag; several:
    a new index of them). `single_must_match`: an image that is not an index must be of one of
    `platforms` (an error naming its platform otherwise); False takes it as it is (a filter
    for indexes only). `referrers`: also what refers to any manifest of the image, to any
    depth; `digest_tags`: with `referrers`, cosign's `sha256-<hex>.sig/.att/.sbom` tags too.
    Blobs up to 1 MiB go `small_concurrency` at a time beside the `concurrency` larger ones;
    `ranges` says when a blob is fetched as parallel ranges (None: never). `policy`: the
    signature policy that must admit the image before any of its blobs moves (None: none).
    """

    platforms: tuple[Platform, ...] = ()
    single_must_match: bool = True
    include_foreign: bool = False
    referrers: bool = False
    digest_tags: bool = True
    concurrency: int = 16
    small_concurrency: int = 64
    ranges: RangePolicy | None = field(default_factory=RangePolicy)
    max_blob_size: int = TIB
    policy: Policy | None = field(default=None, compare=False, repr=False)
    progress: ProgressSink = field(default_factory=Silent, compare=False, repr=False)

    @classmethod
    def for_registries(
        cls,
        options: RegistryOptions,
        *,
        platforms: tuple[Platform, ...] = (),
        single_must_match: bool = True,
        include_foreign: bool = False,
        referrers: bool = False,
        digest_tags: bool = True,
        progress: ProgressSink | None = None,
        policy: Policy | None = None,
    ) -> CopyOptions:
        """The options a run with `options` copies with (concurrency, ranged downloads, the
        blob-size cap), and what the caller chose of the image; with a `policy`, the
        signatures travel with the image (referrers and digest tags on)."""
        return cls(
            platforms=platforms,
            single_must_match=single_must_match,
            include_foreign=include_foreign,
            referrers=referrers or policy is not None,
            digest_tags=digest_tags or policy is not None,
            policy=policy,
            concurrency=options.concurrency,
            small_concurrency=options.check_concurrency,
            ranges=RangePolicy(
                threshold=options.ranged_download_threshold,
                part_size=options.chunk_size,
                parallel=options.ranged_parallel,
            ),
            max_blob_size=options.limits.max_blob_size,
            progress=progress or Silent(),
        )

    def for_attached(self) -> CopyOptions:
        """The options for what is attached to an image: the same, without the platform
        filter (a signature or SBOM has no platform, and names its subject by digest) and
        without the policy (signatures are not themselves signed)."""
        return replace(self, platforms=(), single_must_match=False, policy=None)
