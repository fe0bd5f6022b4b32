"""Registry management after the Azure Container Registry client library: repositories,
manifests, tags, properties, content. Any OCI registry; ACR's metadata API where it is ACR."""

from mirror.manage.client import ContainerRegistryClient, ContainerRepository, RegistryArtifact
from mirror.manage.content import (
    ContainerRegistryContentClient,
    DownloadedBlob,
    FetchedManifest,
    UploadedBlob,
)
from mirror.manage.properties import (
    ArtifactAttributes,
    ManifestOrder,
    ManifestProperties,
    RepositoryProperties,
    TagProperties,
)

__all__ = [
    "ArtifactAttributes",
    "ContainerRegistryClient",
    "ContainerRegistryContentClient",
    "ContainerRepository",
    "DownloadedBlob",
    "FetchedManifest",
    "ManifestOrder",
    "ManifestProperties",
    "RegistryArtifact",
    "RepositoryProperties",
    "TagProperties",
    "UploadedBlob",
]
