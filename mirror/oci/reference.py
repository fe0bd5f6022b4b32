"""Endpoint references in skopeo's spelling: `docker://host/repo:tag@digest`, `oci:PATH[:REF]`,
`oci-archive:FILE[:REF]`, `docker-archive:FILE[:NAME:TAG|:@N]`, and bare `host/repo:tag`
(Docker Hub normalised)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from mirror.errors import InvalidDigest, InvalidReference
from mirror.oci.digest import Digest

__all__ = [
    "DOCKER_HUB",
    "TRANSPORTS",
    "ArchiveReference",
    "DockerArchiveReference",
    "LayoutReference",
    "Reference",
    "RegistryReference",
    "check_destination",
    "endpoint_hint",
    "parse_reference",
    "repo_tag",
]

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_API: Final = "registry-1.docker.io"
_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
#: the transports written `NAME:…` (docker's is `docker://`), longest first
TRANSPORTS: Final = ("docker-archive", "oci-archive", "oci")
_UNSUPPORTED_TRANSPORTS: Final = frozenset(
    {"dir", "docker-daemon", "containers-storage", "ostree", "sif", "tarball"}
)

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE: Final = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE: Final = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_HOST_RE: Final = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?"
)
# The grammar of org.opencontainers.image.ref.name values (image-spec annotations.md).
_REF_NAME_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE: Final = re.compile(rf"{_REF_NAME_COMPONENT}(?:/{_REF_NAME_COMPONENT})*")


@dataclass(frozen=True)
class RegistryReference:
    """An image or repository in a registry: `docker://registry/repository[:tag][@digest]`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def api_host(self) -> str:
        """The host:port the registry API is served on (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag, else `latest`."""
        return str(self.digest) if self.digest else (self.tag or "latest")

    def with_reference(
        self, *, tag: str | None = None, digest: Digest | None = None
    ) -> RegistryReference:
        """The same repository with another tag and/or digest."""
        return RegistryReference(self.registry, self.repository, tag, digest)

    def __str__(self) -> str:
        text = f"docker://{self.name}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class LayoutReference:
    """An image in an OCI image layout directory: `oci:PATH[:REF]`."""

    path: str
    ref: str | None = None

    transport: str = "oci"

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.ref}" if self.ref else "")


@dataclass(frozen=True)
class ArchiveReference(LayoutReference):
    """An image in a tar of an OCI image layout: `oci-archive:FILE[:REF]`."""

    transport: str = "oci-archive"


@dataclass(frozen=True)
class DockerArchiveReference:
    """An image in a `docker save` tar: `docker-archive:FILE[:NAME:TAG|:@N]`; `image` is the
    NAME:TAG (RepoTags) or `@N` (position) chosen, None for the only one or untagged."""

    path: str
    image: str | None = None

    transport: str = "docker-archive"

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.image}" if self.image else "")


Reference = RegistryReference | LayoutReference | DockerArchiveReference


def parse_reference(text: str) -> Reference:
    """Parse any endpoint string mirror accepts; raise InvalidReference naming the bad part."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference("empty reference")
    if text.startswith("docker://"):
        return parse_registry_reference(text[len("docker://") :], original=text)
    transport, sep, rest = text.partition(":")
    if sep and transport in ("oci", "oci-archive"):
        return _parse_layout(transport, rest, text)
    if sep and transport == "docker-archive":
        return _parse_docker_archive(rest, text)
    if sep and transport == "docker":
        raise InvalidReference(f"invalid reference {text!r}: the docker transport is docker://")
    if sep and transport in _UNSUPPORTED_TRANSPORTS:
        raise InvalidReference(
            f"invalid reference {text!r}: transport {transport!r} is not supported"
        )
    hint = endpoint_hint(text)
    if hint is not None:
        raise InvalidReference(hint)
    return parse_registry_reference(text, original=text)


def endpoint_hint(text: str) -> str | None:
    """Why a bare `text` (no transport) cannot be meant for a registry, and what was: a path
    (`./x`, `/x`, `../x`, `~/x`: "did you mean oci:./x?") or a transport without its colon
    (`oci/tmp/x`, `oci./x`, `oci`); None for anything else (judged by its spelling alone)."""
    if "://" in text or text.startswith(tuple(f"{t}:" for t in TRANSPORTS)):
        return None
    if text.startswith(("./", "../", "/", "~")) or text in (".", ".."):
        return f"{text!r} is a path, not an endpoint: did you mean oci:{text}?"
    for transport in TRANSPORTS:
        rest = text[len(transport) :]
        if text.startswith(transport) and (not rest or rest.startswith(("/", "./", "../"))):
            meant = f"{transport}:{rest or ('DIR' if transport == 'oci' else 'FILE')}"
            return f"{text!r} lacks the colon after its transport: did you mean {meant}?"
    return None


def _parse_layout(transport: str, rest: str, original: str) -> LayoutReference:
    path, _, ref = rest.partition(":")
    if not path:
        raise InvalidReference(f"invalid reference {original!r}: {transport}: needs a path")
    if ref:
        validate_ref_name(ref, original)
    cls = ArchiveReference if transport == "oci-archive" else LayoutReference
    return cls(path=path, ref=ref or None)


def _parse_docker_archive(rest: str, original: str) -> DockerArchiveReference:
    path, _, image = rest.partition(":")
    if not path:
        raise InvalidReference(f"invalid reference {original!r}: docker-archive: needs a path")
    if image.startswith("@"):
        if not image[1:].isdigit():
            raise InvalidReference(f"invalid reference {original!r}: @N needs a number")
    elif image:
        named = parse_registry_reference(image, original=original)
        if named.digest or not named.tag:
            raise InvalidReference(
                f"invalid reference {original!r}: a docker archive names images NAME:TAG"
            )
    return DockerArchiveReference(path=path, image=image or None)


def check_destination(ref: Reference) -> Reference:
    """`ref` when an image can be written there; InvalidReference for a name that only picks
    an image when reading (a docker archive's `@N`: written, it became `RepoTags: ["@0"]`,
    which `docker load` refuses)."""
    if isinstance(ref, DockerArchiveReference) and ref.image and ref.image.startswith("@"):
        raise InvalidReference(
            f"invalid destination {str(ref)!r}: {ref.image} picks an image when reading; "
            "name the image written NAME:TAG, or give none"
        )
    return ref


def repo_tag(ref: RegistryReference) -> str | None:
    """The name `docker save` lists an image under in RepoTags (`app:1.0` for Docker Hub's
    `library/app`, `host/team/app:1.0` elsewhere); None without a tag."""
    if not ref.tag:
        return None
    name = f"{ref.registry}/{ref.repository}"
    if ref.registry == DOCKER_HUB:
        name = ref.repository.removeprefix("library/")
    return f"{name}:{ref.tag}"


def is_valid_repository(name: str) -> bool:
    """True when `name` follows the repository grammar (lower-case path components)."""
    return isinstance(name, str) and len(name) <= 255 and _REPOSITORY_RE.fullmatch(name) is not None


def is_valid_tag(tag: str) -> bool:
    """True when `tag` follows the tag grammar (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`)."""
    return isinstance(tag, str) and _TAG_RE.fullmatch(tag) is not None


def validate_tag(tag: str) -> str:
    """Check a tag's grammar (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`); InvalidReference if not."""
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise InvalidReference(f"invalid tag {str(tag)[:150]!r}")
    return tag


def validate_ref_name(ref: str, original: str | None = None) -> str:
    """Check an `org.opencontainers.image.ref.name` value (a layout's image name) or a digest."""
    if ref.startswith(("sha256:", "sha512:")):
        try:
            return Digest(ref)
        except InvalidDigest as exc:
            raise InvalidReference(f"invalid reference {original or ref!r}: {exc}") from None
    if not _REF_NAME_RE.fullmatch(ref):
        raise InvalidReference(
            f"invalid reference {original or ref!r}: image name {ref!r} has invalid characters"
        )
    return ref


def parse_registry_reference(text: str, *, original: str | None = None) -> RegistryReference:
    """Parse `host/repo[:tag][@digest]` or a bare Docker Hub name like `alpine:3`."""
    original = original or text
    name, at, digest_text = text.partition("@")
    digest: Digest | None = None
    if at:
        try:
            digest = Digest(digest_text)
        except InvalidDigest as exc:
            raise InvalidReference(f"invalid reference {original!r}: {exc}") from None
    tag: str | None = None
    if name.rfind(":") > name.rfind("/"):
        colon = name.rfind(":")
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(f"invalid reference {original!r}: tag {tag!r} is invalid")
    registry, sep, repository = name.partition("/")
    names_host = "." in registry or ":" in registry or registry == "localhost"
    names_host = names_host or registry.startswith("[")
    if not sep and _is_host_alone(name):
        host = f"{name}:{tag}" if tag and tag.isdigit() else name
        raise InvalidReference(
            f"invalid reference {original!r}: {host} is a registry, not a repository: "
            f"name one as {host}/REPOSITORY"
        )
    if sep and names_host and not repository:
        raise InvalidReference(f"invalid reference {original!r}: missing repository")
    if not sep or not names_host:
        registry, repository = DOCKER_HUB, name
    if not registry or not _HOST_RE.fullmatch(registry):
        raise InvalidReference(
            f"invalid reference {original!r}: registry host {registry!r} is invalid"
        )
    registry = registry.lower()
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    if not repository:
        raise InvalidReference(f"invalid reference {original!r}: missing repository")
    if repository.lower() != repository and _REPOSITORY_RE.fullmatch(repository.lower()):
        raise InvalidReference(
            f"invalid reference {original!r}: repository {repository!r} must be lower-case"
        )
    if not _REPOSITORY_RE.fullmatch(repository):
        raise InvalidReference(
            f"invalid reference {original!r}: repository {repository!r} is invalid"
        )
    if len(registry) + 1 + len(repository) > 255:
        raise InvalidReference(f"invalid reference {original!r}: name longer than 255 characters")
    return RegistryReference(registry, repository, tag, digest)


def _is_host_alone(name: str) -> bool:
    """True when a name without `/` can only be a registry host (`localhost`, an IP
    address): Docker Hub has no such repository, and a port after it is no tag."""
    if name == "localhost" or name.startswith("["):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
