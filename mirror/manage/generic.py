"""Management on any OCI registry: properties derived from the v2 API.

A registry without a metadata API still answers "which tags, which digests, what size, what
platform, when built": tags are listed and resolved with HEAD, manifests and their image
configs are read (created time, os/architecture). Only tagged manifests can be listed.
Writable attributes do not exist here: updating them raises UnsupportedOperation.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator

from mirror.errors import (
    ManifestInvalid,
    ManifestNotFound,
    UnsupportedOperation,
)
from mirror.imageconfig import read_config
from mirror.manage.properties import (
    ArtifactAttributes,
    ManifestOrder,
    ManifestProperties,
    RepositoryProperties,
    TagProperties,
    parse_time,
)
from mirror.oci.digest import Digest
from mirror.oci.model import Manifest, ManifestLike
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, Repository
from mirror.support.tasks import together

__all__ = ["GenericBackend", "sort_by_time"]

_EPOCH = datetime.datetime.min.replace(tzinfo=datetime.UTC)
_LOOKUPS_AT_ONCE = 8


def sort_by_time(items: list[ManifestProperties], order: ManifestOrder) -> list[ManifestProperties]:
    """Newest or oldest first by last update (unknown times count as oldest), then digest."""
    ordered = sorted(items, key=lambda m: (m.last_updated_on or _EPOCH, m.digest))
    return ordered[::-1] if order == ManifestOrder.NEWEST else ordered


class GenericBackend:
    """The management operations for a registry that only speaks the distribution API."""

    def __init__(self, client: RegistryClient, registry: str) -> None:
        self.client = client
        self.registry = registry

    def repository(self, name: str) -> Repository:
        """The v2 repository `name`."""
        return self.client.repository(RegistryReference(self.registry, name))

    def repository_names(self) -> AsyncIterator[str]:
        """Every repository (catalog API)."""
        return self.client.catalog(self.registry)

    async def tagged(self, name: str) -> dict[str, list[str]]:
        """Digest -> the tags pointing at it, for every tag of `name`."""
        return await self.repository(name).tags_by_digest()

    async def describe(self, name: str, digest: str, tags: list[str]) -> ManifestProperties:
        """Properties of one manifest, read from it and its image config."""
        repo = self.repository(name)
        manifest = await repo.manifest_get(digest)
        created, arch, os_name = await self._config_facts(repo, manifest)
        size = manifest.size
        if isinstance(manifest, Manifest):
            size += sum(blob.size for blob in manifest.blobs())
        return ManifestProperties(
            registry=self.registry,
            repository=name,
            digest=str(manifest.digest),
            size=size,
            media_type=manifest.media_type,
            architecture=arch,
            operating_system=os_name,
            tags=tuple(sorted(tags)),
            created_on=created,
            last_updated_on=created,
        )

    async def _config_facts(
        self, repo: Repository, manifest: ManifestLike
    ) -> tuple[datetime.datetime | None, str | None, str | None]:
        created = parse_time(manifest.annotations.get("org.opencontainers.image.created"))
        if not isinstance(manifest, Manifest):
            return created, None, None
        try:
            obj = await read_config(repo, manifest)
        except ManifestInvalid:
            obj = None
        if obj is None:
            return created, None, None
        arch, os_name = obj.get("architecture"), obj.get("os")
        return (
            parse_time(obj.get("created")) or created,
            arch if isinstance(arch, str) else None,
            os_name if isinstance(os_name, str) else None,
        )

    async def manifests(self, name: str, order: ManifestOrder) -> list[ManifestProperties]:
        """Every tagged manifest of `name`, ordered by build time."""
        tagged = await self.tagged(name)
        gate = asyncio.Semaphore(_LOOKUPS_AT_ONCE)

        async def one(digest: str, tags: list[str]) -> ManifestProperties:
            async with gate:
                return await self.describe(name, digest, tags)

        found = await together(one(d, t) for d, t in tagged.items())
        return sort_by_time(list(found), order)

    async def manifest_properties(self, name: str, digest: str) -> ManifestProperties:
        """One manifest, with the tags that point at it."""
        tagged = await self.tagged(name)
        return await self.describe(name, str(Digest(digest)), tagged.get(digest, []))

    async def tags(
        self, name: str, digest: str | None, order: ManifestOrder
    ) -> list[TagProperties]:
        """The tags of `name` (only those on `digest` when given), ordered by build time."""
        out: list[TagProperties] = []
        for manifest in await self.manifests(name, order):
            if digest is not None and manifest.digest != digest:
                continue
            out.extend(
                TagProperties(
                    self.registry,
                    name,
                    tag,
                    manifest.digest,
                    manifest.created_on,
                    manifest.last_updated_on,
                )
                for tag in manifest.tags
            )
        return out

    async def tag_properties(self, name: str, tag: str) -> TagProperties:
        """One tag."""
        head = await self.repository(name).manifest_head(tag)
        if head is None:
            raise ManifestNotFound(f"tag {self.registry}/{name}:{tag} not found")
        manifest = await self.describe(name, str(head.digest), [tag])
        return TagProperties(
            self.registry, name, tag, manifest.digest, manifest.created_on, manifest.last_updated_on
        )

    async def repository_properties(self, name: str) -> RepositoryProperties:
        """Counts and times of `name`, derived from its tagged manifests."""
        manifests = await self.manifests(name, ManifestOrder.OLDEST)
        times = [m.created_on for m in manifests if m.created_on]
        return RepositoryProperties(
            registry=self.registry,
            name=name,
            manifest_count=len(manifests),
            tag_count=sum(len(m.tags) for m in manifests),
            created_on=min(times) if times else None,
            last_updated_on=max(times) if times else None,
        )

    def unsupported(self, what: str) -> UnsupportedOperation:
        """The error for writable attributes on this registry."""
        return UnsupportedOperation(
            f"updating {what} properties is not supported by this registry ({self.registry}):"
            " it has no metadata API (Azure Container Registry has one)"
        )

    async def update_repository(
        self, name: str, attributes: ArtifactAttributes
    ) -> RepositoryProperties:
        """Not supported here."""
        raise self.unsupported("repository")

    async def update_manifest(
        self, name: str, digest: str, attributes: ArtifactAttributes
    ) -> ManifestProperties:
        """Not supported here."""
        raise self.unsupported("manifest")

    async def update_tag(
        self, name: str, tag: str, attributes: ArtifactAttributes
    ) -> TagProperties:
        """Not supported here."""
        raise self.unsupported("tag")

    async def delete_tag(self, name: str, tag: str) -> None:
        """Delete a tag (its manifest too where the registry cannot delete a tag alone and
        no other tag points at it)."""
        await self.repository(name).tag_delete(tag)

    async def delete_repository(self, name: str) -> None:
        """Delete every tagged manifest of `name` (the v2 API has no repository delete)."""
        repo = self.repository(name)
        for digest in await self.tagged(name):
            await repo.manifest_delete(Digest(digest))
