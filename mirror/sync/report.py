"""What a sync did, or (dry run) would do, per image: the statuses and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Status", "SyncReport", "TaskReport"]


class Status(StrEnum):
    """The outcome of one image or deletion (the text is what reports print)."""

    COPIED = "copied"
    UP_TO_DATE = "up-to-date"
    FAILED = "failed"
    DELETED = "deleted"
    PLANNED = "planned"
    WOULD_DELETE = "would-delete"
    #: not done: the source registry's rate-limit budget is down to the reserve kept
    DEFERRED = "deferred"
    #: not started: the run was asked to stop (a signal); the next run does it
    STOPPED = "stopped"
    #: not copied: the signature policy does not admit the image (nothing of it written)
    REFUSED = "refused"


@dataclass(slots=True)
class TaskReport:
    """What happened to one image."""

    job: str
    source: str
    destination: str
    status: Status
    digest: str = ""
    bytes: int = 0
    #: bytes of blobs mounted from another repository instead of sent
    mounted: int = 0
    seconds: float = 0.0
    error: str = ""
    #: what admitted the image under the signature policy (`key SHA256:…`, an identity)
    admitted: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {
            "job": self.job,
            "source": self.source,
            "destination": self.destination,
            "status": str(self.status),
            "digest": self.digest,
            "bytes": self.bytes,
            "bytesMounted": self.mounted,
            "seconds": round(self.seconds, 3),
        }
        if self.error:
            out["error"] = self.error
        if self.admitted:
            out["admittedBy"] = self.admitted
        return out


@dataclass
class SyncReport:
    """Every image's outcome, in plan order."""

    images: list[TaskReport] = field(default_factory=list)
    #: the request budget each registry announced, as it stood at the end (host -> JSON)
    rate_limits: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[TaskReport]:
        """The failures."""
        return [i for i in self.images if i.status is Status.FAILED]

    @property
    def refused(self) -> list[TaskReport]:
        """The images the signature policy did not admit."""
        return [i for i in self.images if i.status is Status.REFUSED]

    @property
    def deferred(self) -> list[TaskReport]:
        """The images left for a later run (a registry's rate-limit reserve was reached)."""
        return [i for i in self.images if i.status is Status.DEFERRED]

    def counts(self) -> dict[str, int]:
        """How many images (and deletions) ended in each status."""
        counts: dict[str, int] = {}
        for image in self.images:
            counts[str(image.status)] = counts.get(str(image.status), 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {
            "summary": self.counts(),
            "images": [i.to_json() for i in self.images],
        }
        if self.rate_limits:
            out["rateLimits"] = self.rate_limits
        return out
