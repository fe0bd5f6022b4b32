"""`signedIdentity`: whether the identity a signature names matches the image being admitted,
exactly as containers/image decides it (signature/policy_reference_match.go).

The image's identity is its source reference (`host/repo:tag` or `host/repo@digest`); the
signature's is its payload's `docker-reference`. `matchRepoDigestOrExact`, the default, wants
the same `host/repo:tag` for an image named by tag, and only the same repository for an image
named by digest: cosign's usual identity, the repository without a tag, matches neither — that
takes `matchRepository`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.errors import InvalidReference
from mirror.oci.reference import RegistryReference, parse_registry_reference

__all__ = [
    "ExactReference",
    "ExactRepository",
    "MatchExact",
    "MatchRepoDigestOrExact",
    "MatchRepository",
    "RemapIdentity",
    "SignedIdentity",
    "plain",
    "prefix_matches",
]


def plain(ref: RegistryReference) -> str:
    """The reference as docker spells it: `host/repo[:tag][@digest]`, no transport."""
    text = ref.name
    if ref.tag:
        text += f":{ref.tag}"
    if ref.digest:
        text += f"@{ref.digest}"
    return text


def _name_only(ref: RegistryReference) -> bool:
    return ref.tag is None and ref.digest is None


def _parse(text: str) -> RegistryReference | None:
    try:
        return parse_registry_reference(text)
    except InvalidReference:
        return None


def _repo_digest_or_exact(intended: RegistryReference, signature: RegistryReference) -> bool:
    """containers/image's matchRepoDigestOrExactReferenceValues."""
    if _name_only(signature):
        return False
    if intended.tag is not None:  # also a reference with both a tag and a digest
        return plain(signature) == plain(intended)
    if intended.digest is not None:
        return signature.name == intended.name
    return False


@dataclass(frozen=True)
class MatchRepoDigestOrExact:
    """The default: by tag, the same `host/repo:tag`; by digest, the same repository."""

    def matches(self, image: RegistryReference | None, signed: str) -> bool:
        """Whether the signature's `signed` identity admits `image`."""
        signature = _parse(signed)
        if image is None or signature is None:
            return False
        return _repo_digest_or_exact(image, signature)

    def describe(self) -> str:
        """How a refusal names this rule."""
        return (
            "matchRepoDigestOrExact (the default: cosign's usual identity, the repository "
            "without a tag, does not match it; matchRepository does)"
        )


@dataclass(frozen=True)
class MatchExact:
    """Both the image and the signature tagged or digested, and the same."""

    def matches(self, image: RegistryReference | None, signed: str) -> bool:
        """Whether the signature's `signed` identity admits `image`."""
        signature = _parse(signed)
        if image is None or signature is None or _name_only(image) or _name_only(signature):
            return False
        return plain(signature) == plain(image)

    def describe(self) -> str:
        """How a refusal names this rule."""
        return "matchExact"


@dataclass(frozen=True)
class MatchRepository:
    """The same repository, whatever the tag or digest."""

    def matches(self, image: RegistryReference | None, signed: str) -> bool:
        """Whether the signature's `signed` identity admits `image`."""
        signature = _parse(signed)
        if image is None or signature is None:
            return False
        return signature.name == image.name

    def describe(self) -> str:
        """How a refusal names this rule."""
        return "matchRepository"


@dataclass(frozen=True)
class ExactReference:
    """The signature names exactly `reference` (tagged or digested), whatever the image."""

    reference: str

    def matches(self, image: RegistryReference | None, signed: str) -> bool:
        """Whether the signature's `signed` identity admits `image`."""
        intended, signature = _parse(self.reference), _parse(signed)
        if intended is None or signature is None:
            return False
        if _name_only(intended) or _name_only(signature):
            return False
        return plain(signature) == plain(intended)

    def describe(self) -> str:
        """How a refusal names this rule."""
        return f"exactReference {self.reference}"


@dataclass(frozen=True)
class ExactRepository:
    """The signature names the repository `repository`, whatever the image."""

    repository: str

    def matches(self, image: RegistryReference | None, signed: str) -> bool:
        """Whether the signature's `signed` identity admits `image`."""
        intended, signature = _parse(self.repository), _parse(signed)
        if intended is None or signature is None:
            return False
        return signature.name == intended.name

    def describe(self) -> str:
        """How a refusal names this rule."""
        return f"exactRepository {self.repository}"


def prefix_matches(ref: str, prefix: str) -> bool:
    """containers/image's refMatchesPrefix: `prefix` is all of `ref`, or is followed in it
    by `:`, `/` or `@`."""
    if len(ref) < len(prefix):
        return False
    if len(ref) == len(prefix):
        return ref == prefix
    return ref.startswith(prefix) and ref[len(prefix)] in ":/@"


@dataclass(frozen=True)
class RemapIdentity:
    """The image's reference with `prefix` replaced by `signed_prefix` (once, at the start),
    then matched as `matchRepoDigestOrExact`: for mirrors that rename repositories."""

    prefix: str
    signed_prefix: str

    def remapped(self, image: RegistryReference) -> RegistryReference | None:
        """The identity the signature should name for `image` (None: it cannot be parsed)."""
        text = plain(image)
        if not prefix_matches(text, self.prefix):
            return image
        return _parse(self.signed_prefix + text[len(self.prefix) :])

    def matches(self, image: RegistryReference | None, signed: str) -> bool:
        """Whether the signature's `signed` identity admits `image`."""
        signature = _parse(signed)
        if image is None or signature is None:
            return False
        intended = self.remapped(image)
        return intended is not None and _repo_digest_or_exact(intended, signature)

    def describe(self) -> str:
        """How a refusal names this rule."""
        return f"remapIdentity {self.prefix} -> {self.signed_prefix}"


SignedIdentity = (
    MatchRepoDigestOrExact
    | MatchExact
    | MatchRepository
    | ExactReference
    | ExactRepository
    | RemapIdentity
)
