"""Management on Azure Container Registry: the `/acr/v1` metadata API (api-version 2021-07-01).

Properties, time ordering, attribute updates (deleteEnabled, writeEnabled, listEnabled,
readEnabled) and repository deletion come from ACR itself; manifests and blobs still go
through the v2 API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from mirror.errors import ManifestNotFound, RegistryError
from mirror.manage.properties import (
    ArtifactAttributes,
    ManifestOrder,
    ManifestProperties,
    RepositoryProperties,
    TagProperties,
    parse_time,
)
from mirror.oci.digest import Digest
from mirror.oci.reference import RegistryReference, validate_tag
from mirror.registry import RegistryClient, Repository
from mirror.registry.errors import Missing
from mirror.registry.paging import paged_items
from mirror.retry import Attempt, Repeat
from mirror.support import jsonutil
from mirror.support.httpbody import read_at_most

__all__ = ["API_VERSION", "AcrBackend"]

API_VERSION = "2021-07-01"
_JSON = {"Accept": "application/json"}
_ORDER = {ManifestOrder.NEWEST: "timedesc", ManifestOrder.OLDEST: "timeasc"}


class AcrBackend:
    """The management operations through ACR's metadata API."""

    def __init__(self, client: RegistryClient, registry: str) -> None:
        self.client = client
        self.registry = registry
        self.transport = client.transport(registry)

    def repository(self, name: str) -> Repository:
        """The v2 repository `name`."""
        return self.client.repository(RegistryReference(self.registry, name))

    @staticmethod
    def _path(name: str, *parts: str) -> str:
        # the repository name is one path segment: `library/hello-world` goes as
        # `library%2Fhello-world`, as the service and its SDKs spell it
        tail = "".join(f"/{quote(p, safe='')}" for p in parts)
        return f"/acr/v1/{quote(name, safe='')}{tail}"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...],
        what: str,
        body: dict[str, Any] | None = None,
        missing: Missing = Missing.MANIFEST,
    ) -> dict[str, Any]:
        sep = "&" if "?" in path else "?"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"

        async def once(_: Attempt) -> dict[str, Any]:
            resp = await self.transport.request(
                method,
                f"{path}{sep}api-version={API_VERSION}",
                scopes=scopes,
                what=what,
                missing=missing,
                ok=(200, 202, 204),
                headers=headers,
                data=json.dumps(body).encode() if body is not None else None,
            )
            try:
                raw = await read_at_most(resp, 16 * 1024 * 1024)
            finally:
                resp.release()
            try:
                parsed = jsonutil.loads(raw) if raw.strip() else {}
            except ValueError:
                raise RegistryError(f"{what}: ACR sent no JSON") from None
            return parsed if isinstance(parsed, dict) else {}

        # a read, or a PATCH of attributes (the same done twice): asked again whole
        return await self.transport.retry.run(once, Repeat.WHOLE)

    async def _delete(self, path: str, name: str, what: str) -> None:
        """A DELETE of the metadata API (done, too, when answered 404 after a lost answer)."""
        await self.transport.delete(
            f"{path}?api-version={API_VERSION}",
            scopes=self._scopes(name, "delete"),
            what=what,
            missing=Missing.MANIFEST,
            headers=dict(_JSON),
        )

    def _scopes(self, name: str, action: str) -> tuple[str, ...]:
        return (f"repository:{name}:{action}",)

    def _items(self, name: str, first: str, key: str, what: str) -> AsyncIterator[Any]:
        sep = "&" if "?" in first else "?"
        return paged_items(
            self.transport,
            f"{first}{sep}api-version={API_VERSION}",
            key,
            scopes=self._scopes(name, "metadata_read"),
            what=what,
            headers=_JSON,
        )

    async def repository_names(self) -> AsyncIterator[str]:
        """Every repository (`/acr/v1/_catalog`)."""
        async for name in paged_items(
            self.transport,
            f"/acr/v1/_catalog?api-version={API_VERSION}",
            "repositories",
            scopes=("registry:catalog:*",),
            what=f"catalog of {self.registry}",
            headers=_JSON,
        ):
            yield str(name)

    def _repository(self, obj: dict[str, Any], name: str) -> RepositoryProperties:
        return RepositoryProperties(
            registry=str(obj.get("registry") or self.registry),
            name=str(obj.get("imageName") or name),
            manifest_count=obj.get("manifestCount"),
            tag_count=obj.get("tagCount"),
            created_on=parse_time(obj.get("createdTime")),
            last_updated_on=parse_time(obj.get("lastUpdateTime")),
            attributes=ArtifactAttributes.from_acr(obj.get("changeableAttributes")),
        )

    def _manifest(self, obj: dict[str, Any], name: str) -> ManifestProperties:
        return ManifestProperties(
            registry=self.registry,
            repository=name,
            digest=str(obj.get("digest")),
            size=obj.get("imageSize"),
            media_type=obj.get("mediaType"),
            architecture=obj.get("architecture"),
            operating_system=obj.get("os"),
            tags=tuple(obj.get("tags") or ()),
            created_on=parse_time(obj.get("createdTime")),
            last_updated_on=parse_time(obj.get("lastUpdateTime")),
            attributes=ArtifactAttributes.from_acr(obj.get("changeableAttributes")),
        )

    def _tag(self, obj: dict[str, Any], name: str) -> TagProperties:
        return TagProperties(
            registry=self.registry,
            repository=name,
            name=str(obj.get("name")),
            digest=str(obj.get("digest")),
            created_on=parse_time(obj.get("createdTime")),
            last_updated_on=parse_time(obj.get("lastUpdateTime")),
            attributes=ArtifactAttributes.from_acr(obj.get("changeableAttributes")),
        )

    async def repository_properties(self, name: str) -> RepositoryProperties:
        """GET /acr/v1/<name>."""
        obj = await self._call(
            "GET",
            self._path(name),
            scopes=self._scopes(name, "metadata_read"),
            what=f"repository {self.registry}/{name}",
        )
        return self._repository(obj, name)

    async def update_repository(
        self, name: str, attributes: ArtifactAttributes
    ) -> RepositoryProperties:
        """PATCH /acr/v1/<name>."""
        obj = await self._call(
            "PATCH",
            self._path(name),
            scopes=self._scopes(name, "metadata_write"),
            what=f"repository {self.registry}/{name}",
            body=attributes.patch_body(),
        )
        return self._repository(obj, name)

    async def delete_repository(self, name: str) -> None:
        """DELETE /acr/v1/<name>."""
        await self._delete(self._path(name), name, f"repository {self.registry}/{name}")

    async def manifests(self, name: str, order: ManifestOrder) -> list[ManifestProperties]:
        """GET /acr/v1/<name>/_manifests?orderby=…, every page."""
        first = f"{self._path(name, '_manifests')}?orderby={_ORDER[order]}"
        what = f"manifests of {self.registry}/{name}"
        return [self._manifest(m, name) async for m in self._items(name, first, "manifests", what)]

    async def manifest_properties(self, name: str, digest: str) -> ManifestProperties:
        """GET /acr/v1/<name>/_manifests/<digest>."""
        obj = await self._call(
            "GET",
            self._path(name, "_manifests", Digest(digest)),
            scopes=self._scopes(name, "metadata_read"),
            what=f"manifest {self.registry}/{name}@{digest}",
        )
        return self._manifest(obj.get("manifest") or {}, name)

    async def update_manifest(
        self, name: str, digest: str, attributes: ArtifactAttributes
    ) -> ManifestProperties:
        """PATCH /acr/v1/<name>/_manifests/<digest>."""
        obj = await self._call(
            "PATCH",
            self._path(name, "_manifests", Digest(digest)),
            scopes=self._scopes(name, "metadata_write"),
            what=f"manifest {self.registry}/{name}@{digest}",
            body=attributes.patch_body(),
        )
        return self._manifest(obj.get("manifest") or obj, name)

    async def tags(
        self, name: str, digest: str | None, order: ManifestOrder
    ) -> list[TagProperties]:
        """GET /acr/v1/<name>/_tags?orderby=…[&digest=…], every page."""
        first = f"{self._path(name, '_tags')}?orderby={_ORDER[order]}"
        if digest is not None:
            first += f"&digest={quote(str(Digest(digest)), safe='')}"
        what = f"tags of {self.registry}/{name}"
        return [self._tag(t, name) async for t in self._items(name, first, "tags", what)]

    async def tag_properties(self, name: str, tag: str) -> TagProperties:
        """GET /acr/v1/<name>/_tags/<tag>."""
        obj = await self._call(
            "GET",
            self._path(name, "_tags", validate_tag(tag)),
            scopes=self._scopes(name, "metadata_read"),
            what=f"tag {self.registry}/{name}:{tag}",
        )
        if not obj.get("tag"):
            raise ManifestNotFound(f"tag {self.registry}/{name}:{tag} not found")
        return self._tag(obj["tag"], name)

    async def update_tag(
        self, name: str, tag: str, attributes: ArtifactAttributes
    ) -> TagProperties:
        """PATCH /acr/v1/<name>/_tags/<tag>."""
        obj = await self._call(
            "PATCH",
            self._path(name, "_tags", validate_tag(tag)),
            scopes=self._scopes(name, "metadata_write"),
            what=f"tag {self.registry}/{name}:{tag}",
            body=attributes.patch_body(),
        )
        return self._tag(obj.get("tag") or obj, name)

    async def delete_tag(self, name: str, tag: str) -> None:
        """DELETE /acr/v1/<name>/_tags/<tag>."""
        path = self._path(name, "_tags", validate_tag(tag))
        await self._delete(path, name, f"tag {self.registry}/{name}:{tag}")
