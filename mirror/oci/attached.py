"""Names and listings of what is attached to a manifest, free of I/O.

- The fallback tag `<alg>-<hex>` (distribution spec 1.1): an index listing the referrers of
  `<alg>:<hex>`, for registries without the referrers API and for layouts (there named
  `<repository>:<alg>-<hex>` when the layout holds many repositories).
- Cosign-style digest tags `<alg>-<hex>.sig`, `.att`, `.sbom`: signatures, attestations and
  SBOMs stored as images under a tag derived from the digest they are about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, fallback_tag, index_of

__all__ = [
    "DIGEST_TAG_SUFFIXES",
    "digest_tags",
    "fallback_name",
    "is_attached_tag",
    "listing_index",
    "prefix_of",
    "subject_of_tag",
]

#: the suffixes of cosign's digest tags: signatures, attestations, SBOMs
DIGEST_TAG_SUFFIXES = (".sig", ".att", ".sbom")
_ATTACHED = re.compile(r"^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})(\.sig|\.att|\.sbom)?$")


def prefix_of(name: str | None) -> str:
    """The repository part of a layout image name `repository:tag` with its colon (empty
    for a bare name, a digest or a registry tag): attached tags are named alongside."""
    if not name or ":" not in name or name.startswith(("sha256:", "sha512:")):
        return ""
    return name.rsplit(":", 1)[0] + ":"


def fallback_name(name: str | None, subject: Digest) -> str:
    """The name the fallback tag of `subject` takes beside the image name `name`."""
    return f"{prefix_of(name)}{fallback_tag(subject)}"


def digest_tags(subject: Digest) -> list[str]:
    """The cosign digest tags that would hold what is attached to `subject`."""
    return [f"{fallback_tag(subject)}{suffix}" for suffix in DIGEST_TAG_SUFFIXES]


def subject_of_tag(tag: str) -> Digest | None:
    """The digest a fallback tag or a digest tag is about, or None for any other tag."""
    found = _ATTACHED.match(tag.rsplit(":", 1)[-1])
    return Digest(f"{found.group(1)}:{found.group(2)}") if found else None


def is_attached_tag(tag: str) -> bool:
    """True for a fallback tag or a digest tag (it goes with its subject, not on its own)."""
    return subject_of_tag(tag) is not None


def listing_index(referrers: Iterable[Descriptor]) -> Index:
    """A fallback tag's index listing `referrers`, in the order given."""
    return index_of(referrers)
