"""Running a sync: plan the images, skip what is already there, copy the rest in parallel.

Incremental by design: each destination registry repository is listed once; a tag it lacks is
copied without asking, and for a tag whose digest the destination already holds (one HEAD on
each side, or the layout's index) nothing else is requested — no manifest GET, no blob HEAD.
One failing image is reported and the others go on (keep_going). Deletions are mirrored only
for jobs that ask. `shard=(K, N)` takes a stable share of the source repositories, so N runs
together do exactly one full run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any

from mirror import jsonutil
from mirror.endpoint import Endpoint
from mirror.engine import ProgressSink, copy_image
from mirror.errors import InvalidReference, LayoutError, MirrorError, NotFound
from mirror.graph import fetch_from, walk_image
from mirror.layout import Layout
from mirror.manage.generic import GenericBackend
from mirror.manage.properties import parse_time
from mirror.model import Index, Manifest
from mirror.reference import (
    LayoutReference,
    RegistryReference,
    is_valid_tag,
    parse_reference,
)
from mirror.registry import RegistryClient, RegistryOptions, Repository
from mirror.sync.config import Job, SyncConfig, TagFilter
from mirror.sync.referrers import copy_referrers

__all__ = [
    "ImageTask",
    "SyncReport",
    "TaskReport",
    "options_for",
    "run_sync",
    "selected_images",
]

_log = logging.getLogger("mirror.sync")


@dataclass(frozen=True)
class Source:
    """A source repository: a registry repository or the images of one name in a layout."""

    job: Job
    repository: str  # the repository path, without the host
    registry: RegistryReference | None = None
    layout: str | None = None


@dataclass(frozen=True)
class ImageTask:
    """Copy one tag (or pinned digest) of a source repository to its destination."""

    job: str
    source: str  # a reference string
    destination: str
    tag: str | None
    digest: str | None = None


@dataclass
class TaskReport:
    """What happened to one image."""

    job: str
    source: str
    destination: str
    status: str  # copied | up-to-date | failed | deleted | planned | would-delete
    digest: str = ""
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {
            "job": self.job,
            "source": self.source,
            "destination": self.destination,
            "status": self.status,
            "digest": self.digest,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class SyncReport:
    """Every image's outcome, in plan order."""

    images: list[TaskReport] = field(default_factory=list)

    @property
    def failed(self) -> list[TaskReport]:
        """The failures."""
        return [i for i in self.images if i.status == "failed"]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        counts: dict[str, int] = {}
        for image in self.images:
            counts[image.status] = counts.get(image.status, 0) + 1
        return {"summary": counts, "images": [i.to_json() for i in self.images]}


def options_for(config: SyncConfig, base: RegistryOptions | None = None) -> RegistryOptions:
    """Registry options for a run: the base (the global flags) for every registry, and what
    the configuration says of one registry for that registry alone (it wins)."""
    base = base or RegistryOptions()
    settings = config.registries
    hosts = config.hosts()
    said_verify = {h: s.tls_verify for h, s in settings.items() if s.tls_verify is not None}
    said_plain = {h: s.plain_http for h, s in settings.items() if s.plain_http is not None}
    plain = {h for h in hosts if base.uses_plain_http(h)}
    return replace(
        base,
        credentials={
            **base.credentials,
            **{h: s.credentials for h, s in settings.items() if s.credentials},
        },
        plain_http=frozenset(
            {h for h in plain if said_plain.get(h, True)} | {h for h, p in said_plain.items() if p}
        ),
        insecure=frozenset(
            {h for h in base.insecure if said_verify.get(h, False) is False}
            | {h for h, verify in said_verify.items() if not verify}
        ),
        ca_files={**base.ca_files, **{h: s.ca_file for h, s in settings.items() if s.ca_file}},
        rate_limits={
            **base.rate_limits,
            **{h: s.requests_per_second for h, s in settings.items() if s.requests_per_second},
        },
        concurrency=config.concurrency,
        retries=config.retries,
    )


def shard_of(repository_key: str, shards: int) -> int:
    """A stable shard number for a source repository."""
    return int(hashlib.sha256(repository_key.encode()).hexdigest(), 16) % shards


async def _sources(job: Job, client: RegistryClient) -> AsyncIterator[Source]:
    if job.registry:
        async for name in client.catalog(job.registry):
            if job.wants_repository(name):
                yield Source(job, name, registry=RegistryReference(job.registry, name))
        return
    for text in job.sources:
        ref = parse_reference(
            text if text.startswith(("oci:", "docker://")) else f"docker://{text}"
        )
        if isinstance(ref, RegistryReference):
            if ref.tag or ref.digest:
                raise InvalidReference(
                    f"job {job.name}: source {text!r} names a tag; use [jobs.tags]"
                )
            yield Source(job, ref.repository, registry=ref)
        else:
            async with await Layout.open(ref.path) as layout:
                names = {
                    image.name.rsplit(":", 1)[0]
                    for image in await layout.images()
                    if image.name and ":" in image.name
                }
            for name in sorted(names):
                yield Source(job, name, layout=ref.path)


def _destination(job: Job, repository: str, tag: str | None, digest: str | None) -> str:
    if job.destination.startswith("oci:"):
        name = f"{repository}:{tag}" if tag else f"{repository}@{digest}"
        return f"{job.destination.rstrip('/')}:{name}"
    target = job.destination.removeprefix("docker://").rstrip("/")
    text = f"docker://{target}/{repository}"
    return f"{text}:{tag}" if tag else f"{text}@{digest}"


async def _created(repo: Repository | Layout, tag: str) -> float:
    manifest = await repo.manifest_get(tag)
    if isinstance(manifest, Index) and manifest.manifests:
        manifest = await repo.manifest_get(str(manifest.manifests[0].digest))
    if isinstance(manifest, Manifest):
        raw = b"".join([c async for c in repo.blob_open(manifest.config)])
        try:
            created = jsonutil.loads(raw).get("created")
        except (ValueError, AttributeError):
            return 0.0
        when = parse_time(created)
        return when.timestamp() if when else 0.0
    return 0.0


def _valid_tags(tags: list[str], where: str) -> list[str]:
    """The tags that follow the distribution tag grammar; the others are left out, with one
    warning (a registry's tags meet the user's filters only once they are known to be sane)."""
    valid = [t for t in tags if is_valid_tag(t)]
    if len(valid) < len(tags):
        bad = next(t for t in tags if not is_valid_tag(t))
        _log.warning(
            "%s: left out %d tags that break the tag grammar (such as %r)",
            where,
            len(tags) - len(valid),
            bad[:150],
        )
    return valid


async def _select(
    tags: list[str], tags_filter: TagFilter, endpoint: Repository | Layout
) -> list[str]:
    chosen = [t for t in tags if tags_filter.wants(t)]
    if tags_filter.newest is None:
        return sorted(chosen)
    if tags_filter.newest_by == "semver":
        versions = [(TagFilter.semver_key(t), t) for t in chosen]
        ranked = sorted((v, t) for v, t in versions if v is not None)
        return sorted(t for _, t in ranked[-tags_filter.newest :])
    times = [(await _created(endpoint, t), t) for t in chosen]
    return sorted(t for _, t in sorted(times)[-tags_filter.newest :])


async def selected_images(config: SyncConfig, options: RegistryOptions | None = None) -> list[str]:
    """The registry images (`docker://host/repo:tag` or `@digest`) a config's jobs select."""
    async with RegistryClient(options_for(config, options)) as client:
        tasks, _ = await plan(replace_destinations(config), client)
    chosen = [t.source for t in tasks]
    for source in chosen:
        if not source.startswith("docker://"):
            raise InvalidReference(f"{source}: bundles take registry images, not layouts")
    return chosen


def replace_destinations(config: SyncConfig) -> SyncConfig:
    """The config with a placeholder destination where a job has none (image selection only)."""
    jobs = tuple(
        j if j.destination else replace(j, destination="oci:/dev/null") for j in config.jobs
    )
    return replace(config, jobs=jobs)


async def plan(
    config: SyncConfig, client: RegistryClient, shard: tuple[int, int] | None = None
) -> tuple[list[ImageTask], dict[str, tuple[Job, set[str]]]]:
    """Every image to copy, and per destination repository the tags the source still has."""
    tasks: list[ImageTask] = []
    kept: dict[str, tuple[Job, set[str]]] = {}
    for job in config.jobs:
        async for source in _sources(job, client):
            key = (
                f"{source.registry.name if source.registry else source.layout}/{source.repository}"
            )
            if shard is not None and shard_of(key, shard[1]) != shard[0] - 1:
                continue
            if source.registry is not None:
                repo = client.repository(source.registry)
                tags = _valid_tags([t async for t in repo.tags()], str(source.registry))
                chosen = await _select(tags, job.tags, repo)
                base = f"docker://{source.registry.name}"
            else:
                assert source.layout is not None
                async with await Layout.open(source.layout) as layout:
                    prefix = f"{source.repository}:"
                    names = [
                        i.name[len(prefix) :]
                        for i in await layout.images()
                        if i.name and i.name.startswith(prefix)
                    ]
                    tags = _valid_tags(names, f"{source.layout}:{source.repository}")
                    chosen = await _select(tags, job.tags, layout)
                base = f"oci:{source.layout}"
            for tag in chosen:
                src = f"{base}:{tag}" if source.registry else f"{base}:{source.repository}:{tag}"
                tasks.append(
                    ImageTask(job.name, src, _destination(job, source.repository, tag, None), tag)
                )
            for digest in job.tags.digests:
                src = (
                    f"{base}@{digest}"
                    if source.registry
                    else f"{base}:{source.repository}@{digest}"
                )
                tasks.append(
                    ImageTask(
                        job.name,
                        src,
                        _destination(job, source.repository, None, digest),
                        None,
                        digest,
                    )
                )
            kept[_destination(job, source.repository, "x", None).rsplit(":", 1)[0]] = (
                job,
                set(chosen),
            )
    return tasks, kept


class _Endpoints:
    """Endpoints shared by every task of a run: one client, one Layout object per directory."""

    def __init__(self, client: RegistryClient, stack: AsyncExitStack) -> None:
        self.client = client
        self.stack = stack
        self.layouts: dict[tuple[str, bool], Layout] = {}
        #: one pool of blob transfers shared by every image of the run
        self.blob_gate = asyncio.Semaphore(client.options.concurrency)
        self._lock = asyncio.Lock()

    async def get(self, text: str, *, write: bool = False) -> tuple[Endpoint, str | None]:
        """The endpoint and the tag/name/digest within it for a reference string."""
        ref = parse_reference(text)
        if isinstance(ref, RegistryReference):
            name = str(ref.digest) if ref.digest else ref.tag
            return self.client.repository(ref, writing=write), name
        assert isinstance(ref, LayoutReference)
        async with self._lock:
            key = (ref.path, write)
            if key not in self.layouts:
                layout = await Layout.open(ref.path, create=write)
                self.layouts[key] = await self.stack.enter_async_context(layout)
        return self.layouts[key], ref.ref


async def _image_bytes(src: Endpoint, name: str | None) -> tuple[str, int]:
    """The image's digest and the bytes of its distinct blobs (what a copy may move)."""
    top = await src.manifest_get(name)
    graph = await walk_image(top, fetch_from(src), include_foreign=False)
    return str(top.digest), sum(b.size for b in graph.blobs.values())


def _repository_of(task: ImageTask) -> str | None:
    """The destination registry repository of a tag task (`docker://host/path`), else None."""
    if task.tag is None or not task.destination.startswith("docker://"):
        return None
    return task.destination.rsplit(":", 1)[0]


async def _list_destinations(
    tasks: list[ImageTask], endpoints: _Endpoints, gate: asyncio.Semaphore
) -> dict[str, frozenset[str]]:
    """The tags each destination registry repository holds before the run (empty when it does
    not exist yet); one listing replaces a HEAD per tag. A repository that cannot be listed
    is left out, and its tags are asked one by one."""
    repositories = sorted({r for r in map(_repository_of, tasks) if r is not None})

    async def listed(text: str) -> tuple[str, frozenset[str] | None]:
        async with gate:
            dst, _ = await endpoints.get(f"{text}:x")
            assert isinstance(dst, Repository)
            try:
                return text, frozenset([t async for t in dst.tags()])
            except NotFound:
                return text, frozenset()
            except MirrorError as exc:
                _log.info("cannot list %s (%s): asking tag by tag", text, exc)
                return text, None

    found = await asyncio.gather(*(listed(r) for r in repositories))
    return {text: tags for text, tags in found if tags is not None}


async def _existing(
    task: ImageTask,
    config: SyncConfig,
    src: Endpoint,
    src_name: str | None,
    dst: Endpoint,
    dst_name: str | None,
    held: frozenset[str] | None,
) -> str | None:
    """The digest the destination already holds for the task, or None (copy it).

    Not asked when platforms are chosen (the copy may make a new index) or when the
    destination's listing lacks the tag; otherwise one HEAD on each side, the source asked
    only when the destination has something."""
    if config.platforms or (held is not None and task.tag not in held):
        return None
    have = await dst.manifest_head(dst_name) if dst_name else None
    want = await src.manifest_head(src_name) if have else None
    return str(have.digest) if have and want and have.digest == want.digest else None


async def _plan_task(
    task: ImageTask,
    endpoints: _Endpoints,
    config: SyncConfig,
    gate: asyncio.Semaphore,
    held: frozenset[str] | None,
    progress: ProgressSink | None = None,
) -> TaskReport:
    """What a run would do for one image, without writing anything."""
    report = TaskReport(task.job, task.source, task.destination, "planned")
    async with gate:
        try:
            src, src_name = await endpoints.get(task.source)
            try:
                dst, dst_name = await endpoints.get(task.destination)
                same = await _existing(task, config, src, src_name, dst, dst_name, held)
            except LayoutError:
                same = None  # the layout does not exist yet
            if same:
                report.status, report.digest = "up-to-date", same
                return report
            report.digest, report.bytes = await _image_bytes(src, src_name)
        except MirrorError as exc:
            report.status, report.error = "failed", str(exc)
    return report


async def _run_task(
    task: ImageTask,
    endpoints: _Endpoints,
    config: SyncConfig,
    gate: asyncio.Semaphore,
    held: frozenset[str] | None,
    progress: ProgressSink | None = None,
) -> TaskReport:
    report = TaskReport(task.job, task.source, task.destination, "failed")
    started = time.monotonic()
    async with gate:
        try:
            src, src_name = await endpoints.get(task.source)
            dst, dst_name = await endpoints.get(task.destination, write=True)
            dst_tag = None if (task.digest and isinstance(dst, Repository)) else dst_name
            same = await _existing(task, config, src, src_name, dst, dst_name, held)
            if same:
                report.status, report.digest = "up-to-date", same
                return report
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
            report.status, report.digest, report.bytes = (
                "copied",
                result.digest,
                result.bytes_copied,
            )
            if config.referrers:
                report.bytes += await copy_referrers(
                    src, dst, result.source_digest, dst_name, src_name
                )
        except MirrorError as exc:
            report.error = str(exc)
            if not config.keep_going:
                raise
        finally:
            report.seconds = time.monotonic() - started
    return report


async def _delete_extras(
    kept: dict[str, tuple[Job, set[str]]], endpoints: _Endpoints, dry_run: bool
) -> list[TaskReport]:
    reports = []
    for repo_text, (job, wanted) in kept.items():
        if not job.delete:
            continue
        try:
            dst, _ = await endpoints.get(f"{repo_text}:x", write=not dry_run)
        except LayoutError:
            continue  # a layout a dry run has not created yet has nothing to delete
        if isinstance(dst, Layout):
            prefix = repo_text.rsplit(":", 1)[1] + ":"
            present = [
                i.name[len(prefix) :]
                for i in await dst.images()
                if i.name and i.name.startswith(prefix)
            ]
        else:
            present = [t async for t in dst.tags()]
        for tag in sorted(set(present) - wanted):
            report = TaskReport(
                job.name, "", f"{repo_text}:{tag}", "would-delete" if dry_run else "deleted"
            )
            if not dry_run:
                try:
                    if isinstance(dst, Layout):
                        await dst.remove_image(f"{repo_text.rsplit(':', 1)[1]}:{tag}")
                    else:
                        assert isinstance(dst, Repository)
                        await GenericBackend(endpoints.client, dst.registry).delete_tag(
                            dst.name, tag
                        )
                except MirrorError as exc:
                    report.status, report.error = "failed", str(exc)
            reports.append(report)
    return reports


async def run_sync(
    config: SyncConfig,
    *,
    options: RegistryOptions | None = None,
    dry_run: bool = False,
    shard: tuple[int, int] | None = None,
    progress: ProgressSink | None = None,
) -> SyncReport:
    """Plan and run every job; a failing image is reported, the others go on."""
    opts = options_for(config, options)
    report = SyncReport()
    async with RegistryClient(opts) as client, AsyncExitStack() as stack:
        tasks, kept = await plan(config, client, shard)
        endpoints = _Endpoints(client, stack)
        gate = asyncio.Semaphore(max(2, config.concurrency))
        held = await _list_destinations(tasks, endpoints, gate)
        work = _plan_task if dry_run else _run_task
        report.images = list(
            await asyncio.gather(
                *(
                    work(t, endpoints, config, gate, held.get(_repository_of(t) or ""), progress)
                    for t in tasks
                )
            )
        )
        report.images += await _delete_extras(kept, endpoints, dry_run)
    return report
