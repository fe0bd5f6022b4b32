"""Running a sync: survey, plan, execute.

Incremental by design: each destination repository is listed once; a tag it lacks is copied
without asking, and for a tag whose digest the destination already holds (one HEAD on each
side, or the layout's index) nothing else is requested — no manifest GET, no blob HEAD. One
failing image is reported and the others go on (keep_going). Deletions are mirrored only for
jobs that ask. `shard=(K, N)` takes a stable share of the source repositories, so N runs
together do exactly one full run.

    survey.py   what the plan needs, asked once (sources, chosen tags, listings, HEADs)
    plan.py     the pure planner: copy or skip each image, which tags to delete
    execute.py  the plan carried out (or, dry, priced), with keep-going
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import TYPE_CHECKING

from mirror.engine import ProgressSink
from mirror.errors import InvalidReference
from mirror.registry import RegistryClient, RegistryOptions
from mirror.sync.config import SyncConfig, load_config
from mirror.sync.endpoints import Endpoints
from mirror.sync.execute import execute
from mirror.sync.plan import SyncPlan, make_plan
from mirror.sync.record_run import record_run, withdraw_written
from mirror.sync.recorded import DestinationRecords
from mirror.sync.report import SyncReport
from mirror.sync.survey import survey

if TYPE_CHECKING:
    from mirror.trust.policy import Policy

__all__ = [
    "SyncReport",
    "load_sync_config",
    "options_for",
    "plan_sync",
    "run_sync",
    "selected_images",
    "sync_run",
]


def options_for(config: SyncConfig, base: RegistryOptions | None = None) -> RegistryOptions:
    """Registry options for a run: the base (the global flags) for every registry, and what
    the configuration says of one registry over what the base says of it (it wins)."""
    base = base or RegistryOptions()
    return replace(
        base.with_hosts(config.registries),
        concurrency=config.concurrency,
        retries=config.retries,
        blob_cache=base.blob_cache and config.blob_cache,
    )


async def selected_images(config: SyncConfig, options: RegistryOptions | None = None) -> list[str]:
    """The registry images (`docker://host/repo:tag` or `@digest`) a config's jobs select,
    each once (two jobs may select one image), in the order the jobs first select them."""
    async with RegistryClient(options_for(config, options)) as client, AsyncExitStack() as stack:
        found = await survey(config, Endpoints(client, stack), destinations=False)
    chosen = list(dict.fromkeys(found.selected()))
    for source in chosen:
        if not source.startswith("docker://"):
            raise InvalidReference(f"{source}: bundles take registry images, not layouts")
    return chosen


async def plan_sync(
    config: SyncConfig,
    *,
    options: RegistryOptions | None = None,
    shard: tuple[int, int] | None = None,
) -> SyncPlan:
    """What a run of `config` would do now (the plan a dry run reports)."""
    async with RegistryClient(options_for(config, options)) as client, AsyncExitStack() as stack:
        return make_plan(config, await survey(config, Endpoints(client, stack), shard))


async def run_sync(
    config: SyncConfig,
    *,
    options: RegistryOptions | None = None,
    dry_run: bool = False,
    shard: tuple[int, int] | None = None,
    progress: ProgressSink | None = None,
    stop: asyncio.Event | None = None,
    verify_destination: bool = False,
    policy: Policy | None = None,
) -> SyncReport:
    """Survey, plan and carry out every job (a dry run prices the plan and writes nothing);
    a failing image is reported, the others go on. Once `stop` is set, the images in flight
    finish and the rest are reported `stopped`. A registry destination unchanged since the
    last run is not asked tag by tag (`recorded.py`) unless `verify_destination`. `policy`:
    the signature policy of the jobs that name none, over the configuration's default (an
    image it refuses is `refused`)."""
    if policy is not None:
        config = replace(config, policy=policy)
    async with RegistryClient(options_for(config, options)) as client, AsyncExitStack() as stack:
        endpoints = Endpoints(client, stack)
        records = DestinationRecords(
            client.options.sync_records_dir(),
            verify_every=config.verify_destination_every,
            verify_now=verify_destination,
        )
        found = await survey(config, endpoints, shard, records=records)
        plan = make_plan(config, found)
        if not dry_run:
            await withdraw_written(records, plan)
        images = await execute(
            plan, found, config, endpoints, dry_run=dry_run, progress=progress, stop=stop
        )
        if not dry_run:
            gate = asyncio.Semaphore(max(2, client.options.check_concurrency))
            await record_run(records, found, images, endpoints, gate)
        budgets = {host: b.to_json() for host, b in client.budgets().items()}
    return SyncReport(images, budgets)


#: the library's names for a sync: `mirror.load_sync_config(path)`, `mirror.sync_run(config)`
load_sync_config = load_config
sync_run = run_sync
