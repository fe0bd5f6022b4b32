"""What a sync run leaves in its destination records (`recorded.py`): before anything is
written, the record of every registry repository the plan writes to is withdrawn (a run that
dies half-way leaves no record that could stand in for a HEAD); once the run ends, each listed
repository is recorded as it now stands — the digests of the tags it copied or found up to
date, and its listing (listed again where the run wrote to it).
"""

from __future__ import annotations

import asyncio

from mirror.support.tasks import together
from mirror.sync.endpoints import Endpoints
from mirror.sync.plan import Action, SyncPlan
from mirror.sync.recorded import DestinationRecords, RepositoryRecord, listing_sum
from mirror.sync.report import Status, TaskReport
from mirror.sync.survey import ImageTask, Repo, Survey, list_destination

__all__ = ["record_run", "withdraw_written"]

_WITHDRAWN = RepositoryRecord("", 0.0, {})


def _written(plan: SyncPlan) -> dict[str, Repo]:
    """The registry repositories a plan writes to (copies and deletions)."""
    written = [i.task.destination for i in plan.images if i.action is Action.COPY]
    written += [d.repository for d in plan.deletions]
    return {str(repo): repo for repo in written if not repo.is_layout}


async def withdraw_written(records: DestinationRecords, plan: SyncPlan) -> None:
    """Withdraw (on disk, now) the record of every registry repository the plan writes to."""
    for repo in _written(plan).values():
        records.record(*repo.registry_and_name, _WITHDRAWN)
    await records.save()


async def record_run(
    records: DestinationRecords,
    found: Survey,
    reports: list[TaskReport],
    endpoints: Endpoints,
    gate: asyncio.Semaphore,
) -> None:
    """Record each listed registry destination repository as the run left it, and save."""
    by_destination = {r.destination: r for r in reports if r.destination}
    tasks: dict[str, list[ImageTask]] = {}
    for task in found.tasks:
        if task.tag is not None and not task.destination.is_layout:
            tasks.setdefault(str(task.destination), []).append(task)
    deleted = {r.destination.rsplit(":", 1)[0] for r in reports if not r.source and r.destination}
    now = records.clock()

    async def one(text: str, held: list[ImageTask]) -> None:
        repo = held[0].destination
        before = found.present.get(text)
        if before is None:
            return
        trusted = found.recorded.get(text)
        tags = dict(trusted.tags) if trusted else {}
        changed = text in deleted
        for task in held:
            assert task.tag is not None
            report = by_destination.get(task.destination_text)
            done = report is not None and report.status in (Status.COPIED, Status.UP_TO_DATE)
            if report is not None and done and report.digest:
                tags[task.tag] = report.digest
            else:
                tags.pop(task.tag, None)
            if report is None or report.status is not Status.UP_TO_DATE or report.bytes:
                changed = True
        listing: frozenset[str] | None = before
        if changed:
            async with gate:
                listing = await list_destination(repo, endpoints)
        if listing is None:
            records.record(*repo.registry_and_name, _WITHDRAWN)
            return
        kept = {tag: digest for tag, digest in tags.items() if tag in listing}
        checked = trusted.checked if trusted else now
        record = RepositoryRecord(listing_sum(listing), checked, kept)
        records.record(*repo.registry_and_name, record)

    await together(one(text, held) for text, held in tasks.items())
    await records.save()
