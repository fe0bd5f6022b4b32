"""Carrying out a sync plan: copy what it says to copy (or, in a dry run, say how much),
report what it skips, delete what it says to delete. A failure is reported and the others go
on unless the configuration says otherwise.
"""

from __future__ import annotations

import asyncio
import time

from mirror.engine import ProgressSink, copy_image
from mirror.errors import MirrorError
from mirror.graph import fetch_from, walk_image
from mirror.oci.digest import Digest
from mirror.registry import Repository
from mirror.sync.config import SyncConfig
from mirror.sync.endpoints import Endpoints
from mirror.sync.plan import Action, PlannedDeletion, PlannedImage, SyncPlan
from mirror.sync.referrers import copy_referrers
from mirror.sync.report import Status, TaskReport
from mirror.sync.survey import ImageTask, Survey

__all__ = ["execute"]


async def _image_bytes(task: ImageTask, endpoints: Endpoints) -> tuple[str, int]:
    """The image's digest and the bytes of its distinct blobs (what a copy may move)."""
    src, name = await endpoints.get(task.source_text)
    top = await src.manifest_get(name)
    graph = await walk_image(top, fetch_from(src), include_foreign=False)
    return str(top.digest), sum(b.size for b in graph.blobs.values())


async def _copy(
    task: ImageTask,
    endpoints: Endpoints,
    config: SyncConfig,
    held: frozenset[str] | None,
    progress: ProgressSink | None,
) -> TaskReport:
    report = TaskReport(task.job, task.source_text, task.destination_text, Status.FAILED)
    src, src_name = await endpoints.get(task.source_text)
    dst, dst_name = await endpoints.get(task.destination_text, write=True)
    dst_tag = None if (task.digest and isinstance(dst, Repository)) else dst_name
    result = await copy_image(
        src,
        src_name,
        dst,
        dst_tag,
        platforms=config.platforms,
        concurrency=config.concurrency,
        check_destination=bool(config.platforms),
        progress=progress,
        blob_gate=endpoints.blob_gate,
        fresh_destination=held is not None and not held,
        max_blob_size=endpoints.client.options.limits.max_blob_size,
        single_must_match=False,
    )
    report.status, report.digest, report.bytes = Status.COPIED, result.digest, result.bytes_copied
    if result.up_to_date:
        report.status = Status.UP_TO_DATE
    if config.referrers:
        in_layout = task.destination.path if task.destination.is_layout else None
        report.bytes += await copy_referrers(src, dst, Digest(result.source_digest), in_layout)
    return report


async def _image(
    item: PlannedImage,
    endpoints: Endpoints,
    config: SyncConfig,
    survey: Survey,
    gate: asyncio.Semaphore,
    dry_run: bool,
    progress: ProgressSink | None,
) -> TaskReport:
    task = item.task
    if item.action is Action.SKIP:
        return TaskReport(
            task.job, task.source_text, task.destination_text, Status.UP_TO_DATE, item.digest
        )
    started = time.monotonic()
    async with gate:
        try:
            if dry_run:
                report = TaskReport(
                    task.job, task.source_text, task.destination_text, Status.PLANNED
                )
                report.digest, report.bytes = await _image_bytes(task, endpoints)
            else:
                held = survey.present.get(str(task.destination))
                report = await _copy(task, endpoints, config, held, progress)
        except MirrorError as exc:
            if not config.keep_going and not dry_run:
                raise
            report = TaskReport(
                task.job, task.source_text, task.destination_text, Status.FAILED, error=str(exc)
            )
    report.seconds = time.monotonic() - started
    return report


async def _delete(deletion: PlannedDeletion, endpoints: Endpoints, dry_run: bool) -> TaskReport:
    target = deletion.repository.image(deletion.tag)
    if dry_run:
        return TaskReport(deletion.job.name, "", target, Status.WOULD_DELETE)
    report = TaskReport(deletion.job.name, "", target, Status.DELETED)
    try:
        endpoint, name = await endpoints.get(target, write=True)
        assert name is not None
        await endpoint.tag_delete(name)
    except MirrorError as exc:
        report.status, report.error = Status.FAILED, str(exc)
    return report


async def execute(
    plan: SyncPlan,
    survey: Survey,
    config: SyncConfig,
    endpoints: Endpoints,
    *,
    dry_run: bool = False,
    progress: ProgressSink | None = None,
) -> list[TaskReport]:
    """Carry out `plan` (a dry run writes nothing); every image's and deletion's report."""
    gate = asyncio.Semaphore(max(2, config.concurrency))
    reports = list(
        await asyncio.gather(
            *(
                _image(item, endpoints, config, survey, gate, dry_run, progress)
                for item in plan.images
            )
        )
    )
    for deletion in plan.deletions:
        reports.append(await _delete(deletion, endpoints, dry_run))
    return reports
