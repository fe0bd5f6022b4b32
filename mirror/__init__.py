"""mirror: move OCI images between registries, OCI image layouts and archives, verifying every byte.

The public API is re-exported here; everything else is private.
"""

from mirror.api import ImageInfo, copy, inspect, list_repositories, list_tags
from mirror.auth import Credentials
from mirror.copy import CopyResult, ProgressSink, copy_image
from mirror.digest import Digest, DigestHasher, verify_stream
from mirror.endpoint import Endpoint
from mirror.errors import (
    BlobNotFound,
    ContentError,
    DigestMismatch,
    Forbidden,
    InvalidDigest,
    InvalidReference,
    LayoutError,
    ManifestInvalid,
    ManifestNotFound,
    MirrorError,
    NotFound,
    RateLimited,
    RegistryError,
    ServerError,
    SizeMismatch,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    UnsupportedOperation,
)
from mirror.layout import GcReport, Layout, LayoutImage, Problem, gc, verify
from mirror.manage import (
    ArtifactAttributes,
    ContainerRegistryClient,
    ContainerRegistryContentClient,
    ContainerRepository,
    ManifestOrder,
    ManifestProperties,
    RegistryArtifact,
    RepositoryProperties,
    TagProperties,
)
from mirror.model import Descriptor, Index, Manifest, ManifestLike, parse_manifest
from mirror.platform import Platform
from mirror.reference import (
    ArchiveReference,
    LayoutReference,
    Reference,
    RegistryReference,
    parse_reference,
)
from mirror.registry import RegistryClient, RegistryOptions, Repository

__all__ = [
    "ArchiveReference",
    "ArtifactAttributes",
    "BlobNotFound",
    "ContainerRegistryClient",
    "ContainerRegistryContentClient",
    "ContainerRepository",
    "ContentError",
    "CopyResult",
    "Credentials",
    "Descriptor",
    "Digest",
    "DigestHasher",
    "DigestMismatch",
    "Endpoint",
    "Forbidden",
    "GcReport",
    "ImageInfo",
    "Index",
    "InvalidDigest",
    "InvalidReference",
    "Layout",
    "LayoutError",
    "LayoutImage",
    "LayoutReference",
    "Manifest",
    "ManifestInvalid",
    "ManifestLike",
    "ManifestNotFound",
    "ManifestOrder",
    "ManifestProperties",
    "MirrorError",
    "NotFound",
    "Platform",
    "Problem",
    "ProgressSink",
    "RateLimited",
    "Reference",
    "RegistryArtifact",
    "RegistryClient",
    "RegistryError",
    "RegistryOptions",
    "RegistryReference",
    "Repository",
    "RepositoryProperties",
    "ServerError",
    "SizeMismatch",
    "TagProperties",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "UnsupportedOperation",
    "copy",
    "copy_image",
    "gc",
    "inspect",
    "list_repositories",
    "list_tags",
    "parse_manifest",
    "parse_reference",
    "verify",
    "verify_stream",
]
