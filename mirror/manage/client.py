"""The management client, after the concepts of the Azure Container Registry client library:
a registry client, repositories, artifacts (a manifest with its tags), properties.

Works with any OCI registry; on Azure Container Registry it uses ACR's metadata API.

    async with ContainerRegistryClient("https://myreg.azurecr.io", DefaultAzureCredential()) as c:
        async for name in c.list_repository_names(): ...
        repo = c.get_repository("hello-world")
        async for manifest in repo.list_manifest_properties(order_by=ManifestOrder.NEWEST): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from types import TracebackType
from typing import Any, Protocol, Self

from yarl import URL

from mirror.auth.sources import AzureAD
from mirror.errors import Forbidden, InvalidReference, ManifestNotFound, MirrorError, Unauthorized
from mirror.manage.acr import API_VERSION, AcrBackend
from mirror.manage.generic import GenericBackend
from mirror.manage.properties import (
    ArtifactAttributes,
    ManifestOrder,
    ManifestProperties,
    RepositoryProperties,
    TagProperties,
)
from mirror.oci.digest import Digest
from mirror.oci.reference import RegistryReference, parse_registry_reference, validate_tag
from mirror.registry import HostSettings, RegistryClient, RegistryOptions

__all__ = ["ContainerRegistryClient", "ContainerRepository", "RegistryArtifact", "endpoint_options"]


class Backend(Protocol):
    """What both backends provide (generic v2 and ACR's metadata API)."""

    def repository_names(self) -> AsyncIterator[str]: ...
    async def repository_properties(self, name: str) -> RepositoryProperties: ...
    async def update_repository(
        self, name: str, attributes: ArtifactAttributes
    ) -> RepositoryProperties: ...
    async def delete_repository(self, name: str) -> None: ...
    async def manifests(self, name: str, order: ManifestOrder) -> list[ManifestProperties]: ...
    async def manifest_properties(self, name: str, digest: str) -> ManifestProperties: ...
    async def update_manifest(
        self, name: str, digest: str, attributes: ArtifactAttributes
    ) -> ManifestProperties: ...
    async def tags(
        self, name: str, digest: str | None, order: ManifestOrder
    ) -> list[TagProperties]: ...
    async def tag_properties(self, name: str, tag: str) -> TagProperties: ...
    async def update_tag(
        self, name: str, tag: str, attributes: ArtifactAttributes
    ) -> TagProperties: ...
    async def delete_tag(self, name: str, tag: str) -> None: ...


def endpoint_options(
    endpoint: str,
    credential: Any = None,
    audience: str | None = None,
    options: RegistryOptions | None = None,
) -> tuple[str, RegistryOptions]:
    """The registry host of `https://host`, `http://host:port` or `host`, and its options."""
    url = URL(endpoint if "://" in endpoint else f"https://{endpoint}")
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
        raise InvalidReference(f"invalid registry endpoint {endpoint!r}: expected https://HOST")
    host = f"{url.host}:{url.port}" if url.explicit_port else url.host
    base = options or RegistryOptions()
    changes: dict[str, Any] = {}
    if url.scheme == "http":
        base = base.with_hosts({host: HostSettings(plain_http=True)})
    if credential is not None:
        changes["sign_in"] = (AzureAD(credential, audience, frozenset({host})), *base.sign_in)
        changes["acr"] = base.acr | {host}
    if changes:
        base = replace(base, **changes)
    return host, base


class _OwnsConnections:
    """Closes its RegistryClient on `close()` or at the end of `async with`."""

    client: RegistryClient

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close connections."""
        await self.client.aclose()


class ContainerRegistryClient(_OwnsConnections):
    """One registry: its repositories and artifacts. Use as an async context manager."""

    def __init__(
        self,
        endpoint: str,
        credential: Any = None,
        *,
        audience: str | None = None,
        options: RegistryOptions | None = None,
    ) -> None:
        self.registry, self.options = endpoint_options(endpoint, credential, audience, options)
        self.client = RegistryClient(self.options)
        self._backend: Backend | None = None

    async def backend(self) -> Backend:
        """ACR's metadata API where the registry is ACR (by name, as told, or answering
        `/acr/v1`), else properties derived from the v2 API."""
        if self._backend is None:
            acr = self.options.is_acr(self.registry) or await self._answers_acr_api()
            backend_type = AcrBackend if acr else GenericBackend
            self._backend = backend_type(self.client, self.registry)
        return self._backend

    async def _answers_acr_api(self) -> bool:
        """Probe `/acr/v1/_catalog`: 200, or a refusal whose token realm is ACR's."""
        transport = self.client.transport(self.registry)
        try:
            resp = await transport.request(
                "GET",
                f"/acr/v1/_catalog?n=1&api-version={API_VERSION}",
                scopes=("registry:catalog:*",),
                what=f"registry {self.registry}",
                ok=(200, 400, 404, 405),
            )
        except (Unauthorized, Forbidden):
            challenge = transport.auth.challenge
            return bool(challenge and (challenge.realm or "").endswith("/oauth2/token"))
        except MirrorError:
            return False
        resp.release()
        return resp.status == 200

    async def is_acr(self) -> bool:
        """True when the registry is managed through ACR's metadata API."""
        return isinstance(await self.backend(), AcrBackend)

    async def list_repository_names(self) -> AsyncIterator[str]:
        """Every repository name."""
        async for name in (await self.backend()).repository_names():
            yield name

    def get_repository(self, name: str) -> ContainerRepository:
        """A repository by name (validated)."""
        return ContainerRepository(self, _checked_name(self.registry, name))

    def get_artifact(self, repository: str, tag_or_digest: str) -> RegistryArtifact:
        """An artifact by repository and tag or digest."""
        return self.get_repository(repository).get_artifact(tag_or_digest)

    async def delete_repository(self, name: str) -> None:
        """Delete a repository with all its manifests and tags."""
        await (await self.backend()).delete_repository(_checked_name(self.registry, name))


def _checked_name(registry: str, name: str) -> str:
    ref = parse_registry_reference(f"{registry}/{name}")
    if ref.tag or ref.digest:
        raise InvalidReference(f"invalid repository name {name!r}: no tag or digest here")
    return ref.repository


class ContainerRepository:
    """A repository: properties, manifests, artifacts."""

    def __init__(self, client: ContainerRegistryClient, name: str) -> None:
        self.client = client
        self.name = name
        self.registry = client.registry

    async def get_properties(self) -> RepositoryProperties:
        """Counts, times and attributes."""
        return await (await self.client.backend()).repository_properties(self.name)

    async def update_properties(
        self,
        *,
        can_delete: bool | None = None,
        can_write: bool | None = None,
        can_list: bool | None = None,
        can_read: bool | None = None,
    ) -> RepositoryProperties:
        """Set writable attributes (ACR); UnsupportedOperation elsewhere."""
        attributes = ArtifactAttributes(can_delete, can_write, can_list, can_read)
        return await (await self.client.backend()).update_repository(self.name, attributes)

    async def list_manifest_properties(
        self, *, order_by: ManifestOrder = ManifestOrder.NEWEST
    ) -> AsyncIterator[ManifestProperties]:
        """Manifests, newest or oldest first."""
        for manifest in await (await self.client.backend()).manifests(self.name, order_by):
            yield manifest

    async def prune(self, keep: int, *, dry_run: bool = False) -> list[ManifestProperties]:
        """Keep the newest `keep` manifests, delete the others with their tags; the deleted
        (with `dry_run`, the doomed) ones, newest first.

        Newest by the registry's last-update time on ACR, by the image's creation time
        elsewhere (the v2 API records no push time). On ACR a manifest's tags go first, so a
        write-locked tag stops the deletion before its manifest is touched.
        """
        if keep < 0:
            raise InvalidReference(f"keep takes 0 or more manifests, not {keep}")
        manifests = [m async for m in self.list_manifest_properties(order_by=ManifestOrder.NEWEST)]
        doomed = manifests[keep:]
        if not dry_run:
            acr = await self.client.is_acr()
            for manifest in doomed:
                artifact = self.get_artifact(manifest.digest)
                for tag in manifest.tags if acr else ():
                    await artifact.delete_tag(tag)
                await artifact.delete()
        return doomed

    def get_artifact(self, tag_or_digest: str) -> RegistryArtifact:
        """One artifact by tag or digest (validated)."""
        if tag_or_digest.startswith(("sha256:", "sha512:")):
            return RegistryArtifact(self, str(Digest(tag_or_digest)))
        return RegistryArtifact(self, validate_tag(tag_or_digest))

    async def delete(self) -> None:
        """Delete this repository."""
        await self.client.delete_repository(self.name)


class RegistryArtifact:
    """A manifest known by tag or digest, with its tags."""

    def __init__(self, repository: ContainerRepository, tag_or_digest: str) -> None:
        self.repository = repository
        self.tag_or_digest = tag_or_digest
        self._digest = tag_or_digest if tag_or_digest.startswith(("sha256:", "sha512:")) else None

    @property
    def fully_qualified_reference(self) -> str:
        """`registry/repository:tag` or `registry/repository@digest`."""
        sep = "@" if self._digest == self.tag_or_digest else ":"
        return f"{self.repository.registry}/{self.repository.name}{sep}{self.tag_or_digest}"

    async def _backend(self) -> Backend:
        return await self.repository.client.backend()

    async def digest(self) -> str:
        """The digest (a tag is resolved once)."""
        if self._digest is None:
            backend = await self._backend()
            if isinstance(backend, AcrBackend):
                tag = await backend.tag_properties(self.repository.name, self.tag_or_digest)
                self._digest = tag.digest
                return self._digest
            repo = self.repository.client.client.repository(
                RegistryReference(self.repository.registry, self.repository.name)
            )
            head = await repo.manifest_head(self.tag_or_digest)
            if head is None:
                raise ManifestNotFound(f"{self.fully_qualified_reference} not found")
            self._digest = str(head.digest)
        return self._digest

    async def get_manifest_properties(self) -> ManifestProperties:
        """The manifest's properties."""
        return await (await self._backend()).manifest_properties(
            self.repository.name, await self.digest()
        )

    async def update_manifest_properties(
        self,
        *,
        can_delete: bool | None = None,
        can_write: bool | None = None,
        can_list: bool | None = None,
        can_read: bool | None = None,
    ) -> ManifestProperties:
        """Set the manifest's writable attributes (ACR)."""
        attributes = ArtifactAttributes(can_delete, can_write, can_list, can_read)
        return await (await self._backend()).update_manifest(
            self.repository.name, await self.digest(), attributes
        )

    async def list_tag_properties(
        self, *, order_by: ManifestOrder = ManifestOrder.NEWEST
    ) -> AsyncIterator[TagProperties]:
        """The tags pointing at this manifest."""
        backend = await self._backend()
        for tag in await backend.tags(self.repository.name, await self.digest(), order_by):
            yield tag

    async def get_tag_properties(self, tag: str) -> TagProperties:
        """One tag's properties."""
        return await (await self._backend()).tag_properties(self.repository.name, validate_tag(tag))

    async def update_tag_properties(
        self,
        tag: str,
        *,
        can_delete: bool | None = None,
        can_write: bool | None = None,
        can_list: bool | None = None,
        can_read: bool | None = None,
    ) -> TagProperties:
        """Set a tag's writable attributes (ACR)."""
        attributes = ArtifactAttributes(can_delete, can_write, can_list, can_read)
        return await (await self._backend()).update_tag(
            self.repository.name, validate_tag(tag), attributes
        )

    async def delete_tag(self, tag: str) -> None:
        """Delete one tag."""
        await (await self._backend()).delete_tag(self.repository.name, validate_tag(tag))

    async def delete(self) -> None:
        """Delete the manifest (and so every tag on it)."""
        repo = self.repository.client.client.repository(
            RegistryReference(self.repository.registry, self.repository.name)
        )
        await repo.manifest_delete(Digest(await self.digest()))
