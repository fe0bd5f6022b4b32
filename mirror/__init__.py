"""mirror: move OCI images between registries, OCI image layouts and archives, verifying every byte.

The public API is re-exported here; everything else is private. Names are imported on first
use (PEP 562), so `import mirror` and the command line load only what they touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# the errors are small: imported at once; every other name on first use
from mirror.errors import (
    BlobNotFound,
    BudgetReserved,
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
    Refused,
    RegistryError,
    RepositoryNotFound,
    ServerError,
    SizeMismatch,
    StorageError,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    UnsupportedOperation,
    UntrustedCertificate,
)

if TYPE_CHECKING:
    from mirror.api import ImageInfo, copy, inspect, list_repositories, list_tags
    from mirror.auth import Credentials
    from mirror.copy_options import CopyOptions
    from mirror.endpoint import Endpoint
    from mirror.engine import CopyResult, copy_image
    from mirror.events import ProgressSink
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
    from mirror.oci.digest import Digest, DigestHasher, verify_stream
    from mirror.oci.model import Descriptor, Index, Manifest, ManifestLike, parse_manifest
    from mirror.oci.platform import Platform
    from mirror.oci.reference import (
        ArchiveReference,
        LayoutReference,
        Reference,
        RegistryReference,
        parse_reference,
    )
    from mirror.registry import HostSettings, RegistryClient, RegistryOptions, Repository
    from mirror.sync.run import SyncReport, load_sync_config, sync_run
    from mirror.trust.policy import Policy, load_policy

#: every other public name, by the module that defines it
_SOURCES = {
    "mirror.api": (
        "ImageInfo",
        "copy",
        "inspect",
        "list_repositories",
        "list_tags",
    ),
    "mirror.auth": ("Credentials",),
    "mirror.oci.digest": (
        "Digest",
        "DigestHasher",
        "verify_stream",
    ),
    "mirror.endpoint": ("Endpoint",),
    "mirror.copy_options": ("CopyOptions",),
    "mirror.engine": (
        "CopyResult",
        "copy_image",
    ),
    "mirror.events": ("ProgressSink",),
    "mirror.layout": (
        "GcReport",
        "Layout",
        "LayoutImage",
        "Problem",
        "gc",
        "verify",
    ),
    "mirror.manage": (
        "ArtifactAttributes",
        "ContainerRegistryClient",
        "ContainerRegistryContentClient",
        "ContainerRepository",
        "ManifestOrder",
        "ManifestProperties",
        "RegistryArtifact",
        "RepositoryProperties",
        "TagProperties",
    ),
    "mirror.oci.model": (
        "Descriptor",
        "Index",
        "Manifest",
        "ManifestLike",
        "parse_manifest",
    ),
    "mirror.oci.platform": ("Platform",),
    "mirror.oci.reference": (
        "ArchiveReference",
        "LayoutReference",
        "Reference",
        "RegistryReference",
        "parse_reference",
    ),
    "mirror.registry": (
        "HostSettings",
        "RegistryClient",
        "RegistryOptions",
        "Repository",
    ),
    "mirror.sync.run": (
        "SyncReport",
        "load_sync_config",
        "sync_run",
    ),
    "mirror.trust.policy": (
        "Policy",
        "load_policy",
    ),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "ArchiveReference",
    "ArtifactAttributes",
    "BlobNotFound",
    "BudgetReserved",
    "ContainerRegistryClient",
    "ContainerRegistryContentClient",
    "ContainerRepository",
    "ContentError",
    "CopyOptions",
    "CopyResult",
    "Credentials",
    "Descriptor",
    "Digest",
    "DigestHasher",
    "DigestMismatch",
    "Endpoint",
    "Forbidden",
    "GcReport",
    "HostSettings",
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
    "Policy",
    "Problem",
    "ProgressSink",
    "RateLimited",
    "Reference",
    "Refused",
    "RegistryArtifact",
    "RegistryClient",
    "RegistryError",
    "RegistryOptions",
    "RegistryReference",
    "Repository",
    "RepositoryNotFound",
    "RepositoryProperties",
    "ServerError",
    "SizeMismatch",
    "StorageError",
    "SyncReport",
    "TagProperties",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "UnsupportedOperation",
    "UntrustedCertificate",
    "copy",
    "copy_image",
    "gc",
    "inspect",
    "list_repositories",
    "list_tags",
    "load_policy",
    "load_sync_config",
    "parse_manifest",
    "parse_reference",
    "sync_run",
    "verify",
    "verify_stream",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'mirror' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (for completion and `dir(mirror)`)."""
    return list(__all__)
