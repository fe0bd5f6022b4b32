"""Carrying out a sync plan: copy what it says to copy (or, in a dry run, say how much),
report what it skips, delete what it says to delete. A failure is reported and the others go
on unless the configuration says otherwise.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from mirror.attached import copy_attached
from mirror.copy_options import CopyOptions
from mirror.engine import CopyRun
from mirror.errors import BudgetReserved, MirrorError, Refused
from mirror.events import ProgressSink
from mirror.graph import fetch_from, walk_image
from mirror.layout import Layout
from mirror.oci.attached import subject_of_tag
from mirror.oci.digest import Digest
from mirror.registry import Repository
from mirror.support.tasks import at_most
from mirror.sync.config import SyncConfig
from mirror.sync.endpoints import Endpoints
from mirror.sync.plan import Action, PlannedDeletion, PlannedImage, SyncPlan
from mirror.sync.referrers import attachments_changed
from mirror.sync.report import Status, TaskReport
from mirror.sync.survey import ImageTask, Survey, SyncStopped

__all__ = ["execute"]


def _with_policy(options: CopyOptions, config: SyncConfig, task: ImageTask) -> CopyOptions:
    """The copy options of the task's job: its signature policy, whose signatures travel."""
    policy = config.policy_of(task.job)
    if policy is None:
        return options
    return replace(options, policy=policy, referrers=True, digest_tags=True)


async def _image_bytes(task: ImageTask, endpoints: Endpoints) -> tuple[str, int]:
    """The image's digest and the bytes of its distinct blobs (what a copy may move)."""
    src, name = await endpoints.get(task.source_text)
    top = await src.manifest_get(name)
    graph = await walk_image(top, fetch_from(src), include_foreign=False)
    return str(top.digest), sum(b.size for b in graph.blobs.values())


async def _copy(
    task: ImageTask,
    endpoints: Endpoints,
    options: CopyOptions,
    survey: Survey,
    *,
    attached_only: bool = False,
) -> TaskReport:
    """Copy an image (with what is attached to it, when the job asks); `attached_only`: the
    image is up to date, only what is attached to it changed."""
    report = TaskReport(task.job, task.source_text, task.destination_text, Status.FAILED)
    src, src_name = await endpoints.get(task.source_text)
    dst, dst_name = await endpoints.get(task.destination_text, write=True)
    dst_tag = None if (task.digest and isinstance(dst, Repository)) else dst_name
    held = survey.present.get(str(task.destination))
    run = CopyRun(
        blob_gate=endpoints.blob_gate,
        check_destination=attached_only or bool(options.platforms),
        fresh_destination=held is not None and not held,
        source_tags=survey.source_tags(task.source),
    )
    result = await copy_attached(src, src_name, dst, dst_tag, options, run=run)
    report.status = Status.UP_TO_DATE if result.up_to_date else Status.COPIED
    report.digest, report.bytes = result.digest, result.bytes_copied
    report.mounted = result.bytes_mounted
    if result.admitted is not None:
        report.admitted = result.admitted.to_json()
    return report


async def _skip(
    item: PlannedImage, endpoints: Endpoints, config: SyncConfig, survey: Survey
) -> bool:
    """For an up-to-date image, whether what is attached to it changed (referrers jobs)."""
    task = item.task
    if not config.carries_attached(task.job):
        return False
    src, src_name = await endpoints.get(task.source_text)
    dst, dst_name = await endpoints.get(task.destination_text)
    return await attachments_changed(
        src,
        src_name,
        dst,
        dst_name,
        Digest(item.digest),
        survey.source_tags(task.source),
        survey.present.get(str(task.destination)),
        with_digest_tags=config.digest_tags or config.policy_of(task.job) is not None,
    )


async def _image(
    item: PlannedImage,
    endpoints: Endpoints,
    config: SyncConfig,
    survey: Survey,
    gate: asyncio.Semaphore,
    dry_run: bool,
    options: CopyOptions,
    stop: asyncio.Event | None,
) -> TaskReport:
    task = item.task
    started = time.monotonic()
    async with gate:
        if stop is not None and stop.is_set():
            return TaskReport(task.job, task.source_text, task.destination_text, Status.STOPPED)
        try:
            if item.action is Action.SKIP:
                report = TaskReport(
                    task.job, task.source_text, task.destination_text, Status.UP_TO_DATE
                )
                report.digest = item.digest
                if not dry_run and await _skip(item, endpoints, config, survey):
                    with_policy = _with_policy(options, config, task)
                    report = await _copy(task, endpoints, with_policy, survey, attached_only=True)
            elif dry_run:
                report = TaskReport(
                    task.job, task.source_text, task.destination_text, Status.PLANNED
                )
                report.digest, report.bytes = await _image_bytes(task, endpoints)
            else:
                report = await _copy(task, endpoints, _with_policy(options, config, task), survey)
        except Refused as exc:  # a decision, not a failure: the run goes on
            report = TaskReport(
                task.job, task.source_text, task.destination_text, Status.REFUSED, error=str(exc)
            )
        except BudgetReserved as exc:
            report = TaskReport(
                task.job, task.source_text, task.destination_text, Status.DEFERRED, error=str(exc)
            )
        except MirrorError as exc:
            if not config.keep_going and not dry_run:
                raise SyncStopped(
                    f"job {task.job}: {exc}; stopped at the first failure (keep_going = false)"
                ) from None
            report = TaskReport(
                task.job, task.source_text, task.destination_text, Status.FAILED, error=str(exc)
            )
    report.seconds = time.monotonic() - started
    return report


async def _delete(
    deletion: PlannedDeletion,
    endpoints: Endpoints,
    survey: Survey,
    kept: set[str],
    dry_run: bool,
) -> list[TaskReport]:
    """Delete a tag that left the source, and the fallback and digest tags of its manifest
    when no tag the job keeps points at it (they go with their subject). A layout decides
    that itself, as it takes the name off (`Layout.remove_image`): an image it keeps
    untagged keeps them."""
    target = deletion.repository.image(deletion.tag)
    status = Status.WOULD_DELETE if dry_run else Status.DELETED
    reports = [TaskReport(deletion.job.name, "", target, status)]
    try:
        endpoint, name = await endpoints.get(target, write=not dry_run)
        assert name is not None
        if isinstance(endpoint, Layout) and not dry_run:
            gone = await endpoint.remove_image(name)
            base = deletion.repository.base
            return reports + [
                TaskReport(deletion.job.name, "", f"{base}:{n}", status) for n in gone[1:]
            ]
        head = await endpoint.manifest_head(name)
        if not dry_run:
            await endpoint.tag_delete(name)
    except MirrorError as exc:
        reports[0].status, reports[0].error = Status.FAILED, str(exc)
        return reports
    if head is None or str(head.digest) in kept:
        return reports
    if deletion.repository.is_layout and deletion.job.keep_untagged > 0:
        return reports  # the image is kept untagged, and what is attached to it with it
    present = survey.present.get(str(deletion.repository), frozenset())
    for tag in sorted(present):
        if subject_of_tag(tag) != head.digest:
            continue
        attached = deletion.repository.image(tag)
        reports.append(TaskReport(deletion.job.name, "", attached, status))
        if dry_run:
            continue
        try:
            found, attached_name = await endpoints.get(attached, write=True)
            assert attached_name is not None
            await found.tag_delete(attached_name)
        except MirrorError as exc:
            reports[-1].status, reports[-1].error = Status.FAILED, str(exc)
    return reports


async def execute(
    plan: SyncPlan,
    survey: Survey,
    config: SyncConfig,
    endpoints: Endpoints,
    *,
    dry_run: bool = False,
    progress: ProgressSink | None = None,
    stop: asyncio.Event | None = None,
) -> list[TaskReport]:
    """Carry out `plan` (a dry run writes nothing); every image's and deletion's report.
    Once `stop` is set, images in flight finish and no other starts (nor any deletion)."""
    gate = asyncio.Semaphore(max(2, config.concurrency))
    options = CopyOptions.for_registries(
        endpoints.client.options,
        platforms=config.platforms,
        single_must_match=False,
        referrers=config.referrers,
        digest_tags=config.digest_tags,
        progress=progress,
    )
    for found in survey.repositories:
        if found.destination is not None and found.destination.is_layout:
            path = found.destination.base.removeprefix("oci:")
            endpoints.retain(path, found.destination.path, found.job.keep_untagged)
    reports = [
        TaskReport(failure.job, failure.source, "", Status.FAILED, error=failure.error)
        for failure in survey.failures
    ]
    reports += await at_most(
        max(2, config.concurrency),
        plan.images,
        lambda item: _image(item, endpoints, config, survey, gate, dry_run, options, stop),
    )
    if stop is not None and stop.is_set():
        return reports
    kept = {r.digest for r in reports if r.digest and r.status is not Status.FAILED}
    for deletion in plan.deletions:
        reports += await _delete(deletion, endpoints, survey, kept, dry_run)
    return reports
