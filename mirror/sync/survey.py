"""The sync survey: everything a plan is decided on, asked once. Per job, the source
repositories and the tags their filters select; per destination repository, the tags it holds
(one listing instead of a HEAD per tag); for a selected tag the destination holds, the digest
on each side (a HEAD there, and at the source only when the destination has something). A
registry destination whose listing is the one the last run recorded (`recorded.py`) is not
asked tag by tag: its recorded digests stand in for the HEADs there.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from mirror.endpoint import Endpoint
from mirror.errors import InvalidReference, LayoutError, ManifestInvalid, MirrorError, NotFound
from mirror.imageconfig import read_config
from mirror.layout import Layout
from mirror.oci.attached import is_attached_tag
from mirror.oci.model import Index, Manifest
from mirror.oci.platform import Platform
from mirror.oci.reference import RegistryReference, is_valid_tag, parse_reference
from mirror.registry import RegistryClient
from mirror.selection import choose_platforms
from mirror.support.tasks import at_most, task_scope, together
from mirror.support.timestamps import parse_time
from mirror.sync.config import Job, SyncConfig, TagFilter
from mirror.sync.endpoints import Endpoints
from mirror.sync.recorded import DestinationRecords, RepositoryRecord

__all__ = [
    "ImageTask",
    "JobFailure",
    "Repo",
    "RepositorySurvey",
    "Survey",
    "SyncStopped",
    "list_destination",
    "shard_of",
    "survey",
]

_log = logging.getLogger("mirror.sync")


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository of a sync: `docker://host/path`, or the images named `path:…` in the
    layout `oci:DIR`."""

    base: str  # docker://host[/prefix] or oci:DIR
    path: str

    @property
    def is_layout(self) -> bool:
        """True for the images of one name in a layout."""
        return self.base.startswith("oci:")

    @property
    def registry_and_name(self) -> tuple[str, str]:
        """A registry repository's host and full name (`host`, `prefix/path`)."""
        host, _, name = str(self).removeprefix("docker://").partition("/")
        return host, name

    def image(self, tag: str | None = None, digest: str | None = None) -> str:
        """The reference string of one image in it, by tag or by digest."""
        return f"{self}:{tag}" if tag else f"{self}@{digest}"

    def __str__(self) -> str:
        return f"{self.base}:{self.path}" if self.is_layout else f"{self.base}/{self.path}"


@dataclass(frozen=True, slots=True)
class ImageTask:
    """Copy one tag (or pinned digest) of a source repository to its destination."""

    job: str
    source: Repo
    destination: Repo
    tag: str | None
    digest: str | None = None

    @property
    def source_text(self) -> str:
        """The source image's reference string."""
        return self.source.image(self.tag, self.digest)

    @property
    def destination_text(self) -> str:
        """The destination image's reference string."""
        return self.destination.image(self.tag, self.digest)


@dataclass(frozen=True)
class RepositorySurvey:
    """One source repository of a job, its destination, and the tags its filters chose."""

    job: Job
    source: Repo
    destination: Repo | None
    chosen: tuple[str, ...]
    #: every name the source has (a registry's tags, a layout's `path:tag` names)
    source_tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class JobFailure:
    """A job (or one source repository of it) that could not be surveyed."""

    job: str
    source: str
    error: str


class SyncStopped(MirrorError):
    """A failure with `keep_going = false`: the run stops there."""


@dataclass
class Survey:
    """What the plan is decided on."""

    repositories: list[RepositorySurvey] = field(default_factory=list)
    #: destination repository -> the tags it holds (absent: it could not be listed)
    present: dict[str, frozenset[str]] = field(default_factory=dict)
    #: destination image -> (digest there, digest at the source), for tags held on both sides
    heads: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    #: jobs or source repositories that could not be surveyed
    failures: list[JobFailure] = field(default_factory=list)
    #: destination repository -> what the last run recorded of it, where its listing is the
    #: one recorded (its tags are not asked one by one)
    recorded: dict[str, RepositoryRecord] = field(default_factory=dict)

    def fail(self, job: Job, source: str, error: MirrorError, keep_going: bool) -> None:
        """Record a job's failure; without `keep_going`, stop the run here."""
        if not keep_going:
            raise SyncStopped(
                f"job {job.name}: {error}; stopped at the first failure (keep_going = false)"
            )
        _log.info("job %s: %s", job.name, error)  # the report says it: once is enough
        self.failures.append(JobFailure(job.name, source, str(error)))

    def source_tags(self, repository: Repo) -> frozenset[str]:
        """Every name the source repository has (empty when it was not listed)."""
        for found in self.repositories:
            if found.source == repository:
                return found.source_tags
        return frozenset()

    @property
    def tasks(self) -> list[ImageTask]:
        """Every image to consider, job by job, tags then pinned digests."""
        out = []
        for found in self.repositories:
            if found.destination is None:
                continue
            name = found.job.name
            out += [ImageTask(name, found.source, found.destination, t) for t in found.chosen]
            out += [
                ImageTask(name, found.source, found.destination, None, str(d))
                for d in found.job.tags.digests
            ]
        return out

    def selected(self) -> list[str]:
        """Every source image the jobs select (reference strings)."""
        out = []
        for found in self.repositories:
            out += [found.source.image(tag) for tag in found.chosen]
            out += [found.source.image(digest=str(d)) for d in found.job.tags.digests]
        return out


def shard_of(repository_key: str, shards: int) -> int:
    """A stable shard number for a source repository."""
    return int(hashlib.sha256(repository_key.encode()).hexdigest(), 16) % shards


def _destination(job: Job, repository: str) -> Repo | None:
    if not job.destination:
        return None
    if job.destination.startswith("oci:"):
        return Repo(job.destination.rstrip("/"), repository)
    return Repo(f"docker://{job.destination.removeprefix('docker://').rstrip('/')}", repository)


async def _sources(job: Job, client: RegistryClient) -> AsyncIterator[Repo]:
    if job.registry:
        async for name in client.catalog(job.registry):
            if job.wants_repository(name):
                yield Repo(f"docker://{job.registry}", name)
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
            yield Repo(f"docker://{ref.registry}", ref.repository)
        else:
            async with await Layout.open(ref.path) as layout:
                names = {n.rsplit(":", 1)[0] async for n in layout.tags() if ":" in n}
            for name in sorted(names):
                yield Repo(f"oci:{ref.path}", name)


def valid_tags(tags: list[str], where: str) -> list[str]:
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


async def _created(endpoint: Endpoint, ref: str) -> float:
    """When the image was made, by its config's `created` (0 when it does not say)."""
    manifest = await endpoint.manifest_get(ref)
    if isinstance(manifest, Index) and manifest.manifests:
        manifest = await endpoint.manifest_get(str(manifest.manifests[0].digest))
    if not isinstance(manifest, Manifest):
        return 0.0
    try:
        config = await read_config(endpoint, manifest)
    except ManifestInvalid:
        return 0.0
    when = parse_time(config.get("created")) if config else None
    return when.timestamp() if when else 0.0


async def _select(
    tags: list[str], tags_filter: TagFilter, endpoint: Endpoint, name_of: str
) -> list[str]:
    chosen = [t for t in tags if tags_filter.wants(t)]
    if tags_filter.newest is None:
        return sorted(chosen)
    if tags_filter.newest_by == "semver":
        versions = [(TagFilter.semver_key(t), t) for t in chosen]
        ranked = sorted((v, t) for v, t in versions if v is not None)
        return sorted(t for _, t in ranked[-tags_filter.newest :])
    times = [(await _created(endpoint, f"{name_of}{t}"), t) for t in chosen]
    return sorted(t for _, t in sorted(times)[-tags_filter.newest :])


async def _names_in(endpoint: Endpoint, repo: Repo) -> list[str]:
    """The tags of a repository: a registry's tag list, or a layout's names `path:tag`."""
    if not repo.is_layout:
        return [t async for t in endpoint.tags()]
    prefix = f"{repo.path}:"
    return [n[len(prefix) :] async for n in endpoint.tags() if n.startswith(prefix)]


async def _chosen(
    job: Job, source: Repo, endpoints: Endpoints, config: SyncConfig
) -> tuple[tuple[str, ...], frozenset[str]]:
    """The tags the job's filters choose, and every tag the source has. With referrers,
    fallback and digest tags are not chosen on their own: they go with their subjects (so
    with a signature policy, whose signatures travel)."""
    endpoint, _ = await endpoints.get(source.image("latest"))
    names = await _names_in(endpoint, source)
    tags = valid_tags(names, str(source))
    if config.carries_attached(job.name):
        tags = [t for t in tags if not is_attached_tag(t)]
    prefix = f"{source.path}:" if source.is_layout else ""
    return tuple(await _select(tags, job.tags, endpoint, prefix)), frozenset(names)


async def list_destination(repo: Repo, endpoints: Endpoints) -> frozenset[str] | None:
    """The tags a destination holds before the run (empty when it does not exist yet); None
    when it cannot be listed (its tags are then asked one by one)."""
    try:
        endpoint, _ = await endpoints.get(repo.image("latest"))
        return frozenset(await _names_in(endpoint, repo))
    except (NotFound, LayoutError):
        return frozenset()
    except MirrorError as exc:
        _log.info("cannot list %s (%s): asking tag by tag", repo, exc)
        return None


async def _wanted(task: ImageTask, endpoints: Endpoints, platforms: tuple[Platform, ...]) -> str:
    """The digest a copy of the task would write: the source's (a HEAD), or with `platforms`
    that of the filtered image (the source's top manifest is read)."""
    src, src_name = await endpoints.get(task.source_text)
    if platforms:
        top = await src.manifest_get(src_name)
        written = choose_platforms(top, platforms) if isinstance(top, Index) else top
        return str(written.digest)
    found = await src.manifest_head(src_name)
    if found is None:
        raise NotFound(f"{task.source_text}: not found")
    return str(found.digest)


async def _heads(
    task: ImageTask, endpoints: Endpoints, platforms: tuple[Platform, ...], *, listed: bool
) -> tuple[str | None, str | None]:
    """The digest the destination holds for a task and, when it holds one, the one a copy
    would write: the source's (a HEAD), or with `platforms` that of the filtered image (the
    source index is read: a platform's manifest, or the index of the chosen ones). When the
    destination's listing showed the tag (`listed`), both answers are needed: the two HEADs
    go together, one round trip instead of two."""
    src, src_name = await endpoints.get(task.source_text)
    try:
        dst, dst_name = await endpoints.get(task.destination_text)
        if listed and not platforms:
            have, want = await together([dst.manifest_head(dst_name), src.manifest_head(src_name)])
        else:
            have, want = await dst.manifest_head(dst_name), None
    except LayoutError:
        return None, None  # the layout does not exist yet
    if have is None:
        return None, None
    if platforms:
        return str(have.digest), await _wanted(task, endpoints, platforms)
    if not listed:
        want = await src.manifest_head(src_name)
    return str(have.digest), str(want.digest) if want else None


async def _survey_sources(
    config: SyncConfig,
    endpoints: Endpoints,
    shard: tuple[int, int] | None,
    found: Survey,
    chosen: Callable[[Job, Repo], Awaitable[RepositorySurvey | None]],
) -> None:
    """Every job's source repositories (this shard's), each surveyed by `chosen`."""
    for job in config.jobs:
        try:
            sources = [
                s
                async for s in _sources(job, endpoints.client)
                if shard is None or shard_of(str(s), shard[1]) == shard[0] - 1
            ]
        except MirrorError as exc:
            found.fail(job, job.describe_source(), exc, config.keep_going)
            continue
        surveyed = await together(chosen(job, s) for s in sources)
        found.repositories += [s for s in surveyed if s is not None]


async def survey(
    config: SyncConfig,
    endpoints: Endpoints,
    shard: tuple[int, int] | None = None,
    *,
    destinations: bool = True,
    records: DestinationRecords | None = None,
) -> Survey:
    """Ask what the plan needs: sources and chosen tags, then (with `destinations`) what
    the destinations hold, `concurrency` requests at a time; a registry destination whose
    listing `records` recorded is not asked tag by tag."""
    found = Survey()
    # listings and HEADs are cheap: their own, wider gate, not the transfers' one
    width = max(2, endpoints.client.options.check_concurrency)
    gate = asyncio.Semaphore(width)
    listings: dict[str, asyncio.Task[frozenset[str] | None]] = {}
    listed_repos: dict[str, Repo] = {}

    async def listed(repo: Repo) -> frozenset[str] | None:
        async with gate:
            return await list_destination(repo, endpoints)

    async with task_scope() as listing_tasks:  # a survey stopped early leaves none running

        def list_early(repo: Repo | None) -> None:
            """List a destination while its source is being listed: a round trip less."""
            if destinations and repo is not None and str(repo) not in listings:
                listings[str(repo)] = listing_tasks.create_task(listed(repo))
                listed_repos[str(repo)] = repo

        async def chosen(job: Job, source: Repo) -> RepositorySurvey | None:
            destination = _destination(job, source.path)
            list_early(destination)
            async with gate:
                try:
                    tags, names = await _chosen(job, source, endpoints, config)
                except MirrorError as exc:
                    found.fail(job, str(source), exc, config.keep_going)
                    return None
            return RepositorySurvey(job, source, destination, tags, names)

        await _survey_sources(config, endpoints, shard, found, chosen)
    for text, listing in listings.items():
        if (tags := listing.result()) is not None:
            found.present[text] = tags
            repo = listed_repos[text]
            if records is not None and tags and not repo.is_layout:
                record = records.trusted(*repo.registry_and_name, tags)
                if record.tags:
                    found.recorded[text] = record
    if not destinations:
        return found

    async def asked(task: ImageTask) -> None:
        held = found.present.get(str(task.destination))
        if held is not None and task.tag not in held:
            return  # a tag the destination lacks is copied without asking
        record = found.recorded.get(str(task.destination))
        have = record.tags.get(task.tag) if record and task.tag else None
        if have is not None:  # recorded, its listing unchanged: only the source is asked
            async with gate:
                try:
                    want = await _wanted(task, endpoints, config.platforms)
                except MirrorError as exc:
                    _log.info("cannot compare %s (%s): copying it", task.destination_text, exc)
                    return
            # the same string twice when they match: a tag's digest is held once
            found.heads[task.destination_text] = (have, have if want == have else want)
            return
        async with gate:
            try:
                found.heads[task.destination_text] = await _heads(
                    task, endpoints, config.platforms, listed=held is not None
                )
            except MirrorError as exc:
                _log.info("cannot compare %s (%s): copying it", task.destination_text, exc)

    await at_most(width, found.tasks, asked)
    return found
