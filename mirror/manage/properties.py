"""What the management API reports about repositories, manifests and tags."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mirror.support.timestamps import parse_time

__all__ = [
    "ArtifactAttributes",
    "ManifestOrder",
    "ManifestProperties",
    "RepositoryProperties",
    "TagProperties",
    "parse_time",
]


class ManifestOrder(StrEnum):
    """Order of manifest and tag listings, by last update time."""

    NEWEST = "newest"
    OLDEST = "oldest"


@dataclass(frozen=True)
class ArtifactAttributes:
    """The writable attributes (ACR's changeableAttributes); None means not known/unchanged."""

    can_delete: bool | None = None
    can_write: bool | None = None
    can_list: bool | None = None
    can_read: bool | None = None

    def patch_body(self) -> dict[str, bool]:
        """The ACR PATCH body: only the attributes being set."""
        names = {
            "deleteEnabled": self.can_delete,
            "writeEnabled": self.can_write,
            "listEnabled": self.can_list,
            "readEnabled": self.can_read,
        }
        return {k: v for k, v in names.items() if v is not None}

    @property
    def empty(self) -> bool:
        """True when no attribute is set."""
        return not self.patch_body()

    @classmethod
    def from_acr(cls, obj: Any) -> ArtifactAttributes:
        """From ACR's `changeableAttributes`."""
        obj = obj if isinstance(obj, dict) else {}

        def flag(name: str) -> bool | None:
            value = obj.get(name)
            return value if isinstance(value, bool) else None

        return cls(
            flag("deleteEnabled"), flag("writeEnabled"), flag("listEnabled"), flag("readEnabled")
        )

    def to_json(self) -> dict[str, bool | None]:
        """JSON-ready."""
        return {
            "canDelete": self.can_delete,
            "canWrite": self.can_write,
            "canList": self.can_list,
            "canRead": self.can_read,
        }


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dated(
    created: datetime.datetime | None,
    updated: datetime.datetime | None,
    attributes: ArtifactAttributes,
) -> dict[str, Any]:
    """The JSON fields every kind of properties shares: times and attributes."""
    return {"createdOn": _iso(created), "lastUpdatedOn": _iso(updated), **attributes.to_json()}


@dataclass(frozen=True)
class RepositoryProperties:
    """A repository: counts, times, attributes."""

    registry: str
    name: str
    manifest_count: int | None = None
    tag_count: int | None = None
    created_on: datetime.datetime | None = None
    last_updated_on: datetime.datetime | None = None
    attributes: ArtifactAttributes = field(default_factory=ArtifactAttributes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "registry": self.registry,
            "name": self.name,
            "manifestCount": self.manifest_count,
            "tagCount": self.tag_count,
            **_dated(self.created_on, self.last_updated_on, self.attributes),
        }


@dataclass(frozen=True)
class ManifestProperties:
    """A manifest: digest, size, media type, platform, tags, times, attributes."""

    registry: str
    repository: str
    digest: str
    size: int | None = None
    media_type: str | None = None
    architecture: str | None = None
    operating_system: str | None = None
    tags: tuple[str, ...] = ()
    created_on: datetime.datetime | None = None
    last_updated_on: datetime.datetime | None = None
    attributes: ArtifactAttributes = field(default_factory=ArtifactAttributes)

    @property
    def fully_qualified_reference(self) -> str:
        """`registry/repository@digest`."""
        return f"{self.registry}/{self.repository}@{self.digest}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "registry": self.registry,
            "repository": self.repository,
            "digest": self.digest,
            "size": self.size,
            "mediaType": self.media_type,
            "architecture": self.architecture,
            "os": self.operating_system,
            "tags": list(self.tags),
            **_dated(self.created_on, self.last_updated_on, self.attributes),
        }


@dataclass(frozen=True)
class TagProperties:
    """A tag: the digest it points at, times, attributes."""

    registry: str
    repository: str
    name: str
    digest: str
    created_on: datetime.datetime | None = None
    last_updated_on: datetime.datetime | None = None
    attributes: ArtifactAttributes = field(default_factory=ArtifactAttributes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "registry": self.registry,
            "repository": self.repository,
            "name": self.name,
            "digest": self.digest,
            **_dated(self.created_on, self.last_updated_on, self.attributes),
        }
