"""Which image of an index a copy takes: the platforms asked for, as one platform's manifest
or a new index of the chosen entries (always the same bytes for the same index and
platforms, so a re-run can tell it is up to date)."""

from __future__ import annotations

from collections.abc import Sequence

from mirror.endpoint import ImageSource
from mirror.errors import ManifestNotFound, MirrorError
from mirror.imageconfig import read_config
from mirror.oci.mediatypes import DOCKER_CONFIG, OCI_CONFIG
from mirror.oci.model import Descriptor, Index, Manifest, ManifestLike, index_of
from mirror.oci.platform import Platform

__all__ = ["choose_platforms", "select_platforms"]


async def select_platforms(
    src: ImageSource, top: ManifestLike, platforms: Sequence[Platform], single_must_match: bool
) -> ManifestLike:
    """The top manifest a copy of `top` writes for `platforms` (all of it when none are
    named). An image that is not an index must be of one of them when `single_must_match`
    (ManifestNotFound naming its platform otherwise); else it is taken whole."""
    if not platforms:
        return top
    if isinstance(top, Manifest):
        if not single_must_match:
            return top  # a filter for the platforms of indexes (sync's `platforms`)
        have = await _platform_of(src, top)
        if have is None or not any(wanted.matches(have) for wanted in platforms):
            names = ", ".join(map(str, platforms))
            raise ManifestNotFound(f"image {top.digest} is {have or 'of no platform'}, not {names}")
        return top
    chosen = choose_platforms(top, platforms)
    if isinstance(chosen, Descriptor):
        return await src.manifest_get(str(chosen.digest))
    return chosen


def choose_platforms(index: Index, platforms: Sequence[Platform]) -> Descriptor | Index:
    """What a copy of `index` filtered to `platforms` writes as its top: the one platform's
    manifest (its descriptor), or a new index of the chosen entries (always the same bytes
    for the same index and platforms, so a re-run can tell it is up to date)."""
    chosen: list[Descriptor] = []
    for wanted in platforms:
        found = index.find(wanted)
        if found is None:
            raise ManifestNotFound(f"no {wanted} image in index {index.digest}")
        if found not in chosen:
            chosen.append(found)
    if len(platforms) == 1:
        return chosen[0]
    return index_of(chosen, index.media_type)


async def _platform_of(src: ImageSource, manifest: Manifest) -> Platform | None:
    """The platform an image's config names (os, architecture, variant), if any."""
    if manifest.config.media_type not in (OCI_CONFIG, DOCKER_CONFIG):
        return None
    try:
        obj = await read_config(src, manifest)
        return Platform.from_json(obj) if obj is not None else None
    except (ValueError, MirrorError):
        return None
