"""The sync planner: from what the survey found, decide per image copy or skip, and which
tags to delete (never a fallback or digest tag on its own: those go with their subject).
Pure: no I/O, so every decision is testable without a registry, and the dry run prints
exactly the plan the real run executes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mirror.oci.attached import is_attached_tag
from mirror.sync.config import Job, SyncConfig
from mirror.sync.survey import ImageTask, Repo, Survey

__all__ = ["Action", "PlannedDeletion", "PlannedImage", "SyncPlan", "make_plan"]


class Action(Enum):
    """What the run does with one image."""

    COPY = "copy"
    SKIP = "skip"  # the destination holds the digest the source has


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """One image and what to do with it; `digest` is the one both sides hold when skipped."""

    task: ImageTask
    action: Action
    digest: str = ""


@dataclass(frozen=True)
class PlannedDeletion:
    """A destination tag that left the source, in a job that mirrors deletions."""

    job: Job
    repository: Repo
    tag: str


@dataclass(frozen=True)
class SyncPlan:
    """Every image in survey order, then the deletions."""

    images: tuple[PlannedImage, ...]
    deletions: tuple[PlannedDeletion, ...]


def _decide(task: ImageTask, survey: Survey) -> PlannedImage:
    """Skip an image whose destination already holds what a copy would write (the source's
    digest, or with platforms that of the filtered image)."""
    have, want = survey.heads.get(task.destination_text, (None, None))
    if have is not None and have == want:
        return PlannedImage(task, Action.SKIP, have)
    return PlannedImage(task, Action.COPY)


def make_plan(config: SyncConfig, survey: Survey) -> SyncPlan:
    """What a run does: copy or skip each selected image, delete what left the source."""
    images = tuple(_decide(task, survey) for task in survey.tasks)
    deletions: list[PlannedDeletion] = []
    for found in survey.repositories:
        if not found.job.delete or found.destination is None:
            continue
        present = survey.present.get(str(found.destination))
        if present is None:
            continue  # not listed: nothing is deleted that is not known to be there
        for tag in sorted(present - set(found.chosen)):
            if not is_attached_tag(tag):  # fallback and digest tags go with their subjects
                deletions.append(PlannedDeletion(found.job, found.destination, tag))
    return SyncPlan(images, tuple(deletions))
