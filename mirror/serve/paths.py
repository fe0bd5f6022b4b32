"""The distribution API's URL paths, checked against the spec's grammar before anything is
looked up: a request that is not one of them, or names a repository, tag or digest the
grammar refuses, is answered here with the spec's code and never reaches a file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from mirror.errors import InvalidDigest
from mirror.oci.digest import Digest
from mirror.oci.reference import is_valid_repository, is_valid_tag
from mirror.serve.answers import ApiError

__all__ = ["MAX_PATH", "Kind", "Route", "check_digest", "check_reference", "parse_path"]

#: the longest path taken (a name is at most 255 characters, a digest 135)
MAX_PATH = 1024

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = rf"(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)"
_LOOSE = r"(?P<name>.+?)"


class Kind(Enum):
    """Which API a path is."""

    BASE = "base"
    CATALOG = "catalog"
    TAGS = "tags"
    MANIFEST = "manifest"
    BLOB = "blob"
    UPLOADS = "uploads"
    REFERRERS = "referrers"


@dataclass(frozen=True)
class Route:
    """A parsed API path: its kind, the repository and the last segment (tag, digest, id)."""

    kind: Kind
    name: str = ""
    reference: str = ""


_SHAPES: tuple[tuple[Kind, str], ...] = (
    (Kind.TAGS, r"/tags/list"),
    (Kind.MANIFEST, r"/manifests/(?P<ref>[^/]+)"),
    (Kind.UPLOADS, r"/blobs/uploads/(?P<ref>[^/]*)"),
    (Kind.BLOB, r"/blobs/(?P<ref>[^/]+)"),
    (Kind.REFERRERS, r"/referrers/(?P<ref>[^/]+)"),
)
_STRICT = [(kind, re.compile(_NAME + tail)) for kind, tail in _SHAPES]
_LOOSELY = [(kind, re.compile(_LOOSE + tail)) for kind, tail in _SHAPES]


def parse_path(raw: str) -> Route:
    """The route of a raw (still percent-encoded) path; ApiError for anything else."""
    if len(raw) > MAX_PATH:
        raise ApiError(400, "NAME_INVALID", f"the path is over {MAX_PATH} characters")
    if "%" in raw or "\\" in raw:
        raise ApiError(400, "NAME_INVALID", "names, tags and digests are never percent-encoded")
    if raw in ("/v2", "/v2/"):
        return Route(Kind.BASE)
    if not raw.startswith("/v2/"):
        raise ApiError(404, "UNSUPPORTED", "not a distribution API path")
    rest = raw[len("/v2/") :]
    if rest == "_catalog":
        return Route(Kind.CATALOG)
    for kind, pattern in _STRICT:
        if (found := pattern.fullmatch(rest)) is not None and is_valid_repository(found["name"]):
            return Route(kind, found["name"], found.groupdict().get("ref") or "")
    for _kind, pattern in _LOOSELY:
        if pattern.fullmatch(rest) is not None:
            raise ApiError(400, "NAME_INVALID", "the repository name is not valid")
    raise ApiError(404, "UNSUPPORTED", "not a distribution API path")


def check_digest(text: str) -> Digest:
    """`text` as a digest; 400 DIGEST_INVALID when it is not one."""
    try:
        return Digest(text)
    except InvalidDigest:
        raise ApiError(400, "DIGEST_INVALID", "the digest is not valid") from None


def check_reference(text: str, *, status: int = 404) -> Digest | str:
    """A manifest reference: a digest, or a tag by the spec's grammar; otherwise an error
    (404 MANIFEST_UNKNOWN for reads, which can never find it; 400 MANIFEST_INVALID for
    writes)."""
    if ":" in text:
        return check_digest(text)
    if not is_valid_tag(text):
        code = "MANIFEST_UNKNOWN" if status == 404 else "MANIFEST_INVALID"
        raise ApiError(status, code, "the tag is not valid")
    return text
