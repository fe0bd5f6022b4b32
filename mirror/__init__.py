"""mirror: move OCI images between registries, OCI image layouts and archives, verifying every byte.

The public API is re-exported here; everything else is private.
"""

from mirror.digest import Digest, DigestHasher, verify_stream
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
)
from mirror.layout import GcReport, Layout, LayoutImage, Problem, gc, verify
from mirror.model import Descriptor, Index, Manifest, ManifestLike, parse_manifest
from mirror.platform import Platform
from mirror.reference import (
    ArchiveReference,
    LayoutReference,
    Reference,
    RegistryReference,
    parse_reference,
)

__all__ = [
    "ArchiveReference",
    "BlobNotFound",
    "ContentError",
    "Descriptor",
    "Digest",
    "DigestHasher",
    "DigestMismatch",
    "Forbidden",
    "GcReport",
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
    "MirrorError",
    "NotFound",
    "Platform",
    "Problem",
    "RateLimited",
    "Reference",
    "RegistryError",
    "RegistryReference",
    "ServerError",
    "SizeMismatch",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "gc",
    "parse_manifest",
    "parse_reference",
    "verify",
    "verify_stream",
]
