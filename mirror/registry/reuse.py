"""Blob reuse at a registry destination, the registry's answer to `reuse_blob`: a blob this
run placed in the repository is skipped; one the repository holds is skipped; one in a
sibling repository of the same registry — the source's, or one where this run or an earlier
one saw it (`BlobLocations`) — is mounted, so its bytes never cross the wire again."""

from __future__ import annotations

import logging
from typing import Protocol

from mirror.endpoint import BlobLocator, ImageSource, InRegistry, Reuse
from mirror.oci.model import Descriptor

__all__ = ["Mounting", "reuse_in_registry"]

_log = logging.getLogger("mirror.registry")


class Mounting(Protocol):
    """What deciding needs of a registry repository (`Repository` holds these verbs)."""

    registry: str
    name: str
    locations: BlobLocator | None

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the repository has the blob (HEAD)."""
        ...

    async def blob_mount(self, desc: Descriptor, source_repository: str) -> bool:
        """Mount `desc` from `source_repository` of the same registry; False if refused."""
        ...


async def reuse_in_registry(
    repo: Mounting, desc: Descriptor, source: ImageSource, *, ask: bool
) -> Reuse:
    """What `repo` can make of `desc` without its bytes (see the module's docstring);
    `ask=False` skips the HEAD (the caller has just seen the repository empty)."""
    known = repo.locations
    if known is not None and known.here(repo.registry, desc.digest, repo.name):
        # placed by another image of this run: placing it again would rewrite the
        # repository's link to it while that image's manifest may be reading it
        return Reuse.SKIPPED
    if ask and await repo.blob_exists(desc):
        _remember(repo, desc)
        return Reuse.SKIPPED
    sibling = (
        source.name if isinstance(source, InRegistry) and source.registry == repo.registry else None
    )
    if sibling is not None and sibling != repo.name and await repo.blob_mount(desc, sibling):
        _log.info("mounted %s from %s", desc.digest, sibling)
        _remember(repo, desc)
        return Reuse.MOUNTED
    if known is None:
        return Reuse.NONE
    for repository in known.candidates(repo.registry, desc.digest, repo.name):
        if repository == sibling:
            continue  # asked just now
        if await repo.blob_mount(desc, repository):
            _log.info("mounted %s from %s (remembered)", desc.digest, repository)
            _remember(repo, desc)
            return Reuse.MOUNTED
        known.forget(repo.registry, desc.digest, repository)
    return Reuse.NONE


def _remember(repo: Mounting, desc: Descriptor) -> None:
    if repo.locations is not None:
        repo.locations.remember(repo.registry, desc.digest, repo.name)
