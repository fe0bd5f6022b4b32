"""The served sources as one read-only store: repositories merge, and a blob (or manifest
by digest) is served from whichever source holds it, so several archives (a bundle's
parts) serve as one. Names come from each source's index, re-read when it changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mirror.errors import ContentError, MirrorError, NotFound
from mirror.layout.reading import BlobSpan
from mirror.oci import mediatypes as mt
from mirror.oci.attached import subject_of_tag
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, Manifest, ManifestLike, parse_manifest
from mirror.serve.answers import ApiError
from mirror.serve.sources import Named, Source

__all__ = ["Content", "Located", "Snapshot"]

#: the most manifests one repository's referrers walk reads
MAX_WALK = 100_000


@dataclass(frozen=True)
class Located:
    """A stored blob: the source that holds it and its size."""

    source: Source
    digest: Digest
    size: int

    async def open(self) -> BlobSpan:
        """The open file (ours to close) and where the blob starts in it."""
        return await self.source.reader.open_span(
            Descriptor("application/octet-stream", self.digest, self.size)
        )


@dataclass
class Snapshot:
    """The names of every source at one moment: repository -> tag -> descriptor, the images
    each repository lists, and every image of every source (for the referrers)."""

    generations: tuple[int, ...]
    tags: dict[str, dict[str, Descriptor]] = field(default_factory=dict)
    roots: dict[str, list[Descriptor]] = field(default_factory=dict)
    everything: list[Descriptor] = field(default_factory=list)
    #: subject digest -> the referrers' descriptors (filled when first asked)
    referrers: dict[str, list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class _Summary:
    """What the referrers walk needs of a manifest."""

    children: tuple[Descriptor, ...]
    subject: Digest | None
    entry: dict[str, Any]


class Content:
    """Every source served, as one store."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self._snapshot: Snapshot | None = None
        self._summaries: dict[Digest, _Summary | None] = {}

    async def snapshot(self) -> Snapshot:
        """The names as they are now (rebuilt only when a source's index changed)."""
        named = [await s.named() for s in self.sources]
        generations = tuple(s.generation for s in self.sources)
        if self._snapshot is not None and self._snapshot.generations == generations:
            return self._snapshot
        snap = Snapshot(generations)
        loose: list[Named] = []
        for entries in named:
            for image in entries:
                snap.everything.append(image.descriptor)
                if image.repository is None:
                    if image.tag is not None:
                        loose.append(image)
                    continue
                snap.roots.setdefault(image.repository, []).append(image.descriptor)
                tags = snap.tags.setdefault(image.repository, {})
                if image.tag is not None:
                    tags.setdefault(image.tag, image.descriptor)
        if loose:
            await self._place(snap, loose)
        self._snapshot = snap
        return snap

    async def _place(self, snap: Snapshot, loose: list[Named]) -> None:
        """A bundle's attached tags served in each repository that holds their subject (a
        tag attached to an attached manifest follows it there)."""
        reach = {repo: await self._reach(roots) for repo, roots in snap.roots.items()}
        placed: set[tuple[str, int]] = set()
        progress = True
        while progress:
            progress = False
            for i, image in enumerate(loose):
                assert image.tag is not None
                subject = subject_of_tag(image.tag)
                for repo, digests in reach.items():
                    if subject in digests and (repo, i) not in placed:
                        placed.add((repo, i))
                        snap.tags[repo].setdefault(image.tag, image.descriptor)
                        digests |= await self._reach([image.descriptor])
                        progress = True

    async def _reach(self, roots: list[Descriptor]) -> set[Digest]:
        """The digests of `roots` and of the manifests their indexes list (to any depth)."""
        seen: set[Digest] = set()
        todo = list(roots)
        while todo and len(seen) < MAX_WALK:
            desc = todo.pop()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            if desc.media_type in mt.INDEXES and (summary := await self._summary(desc)):
                todo.extend(summary.children)
        return seen

    async def repository(self, name: str) -> Snapshot:
        """The snapshot, once `name` is known to be served (404 NAME_UNKNOWN otherwise)."""
        snap = await self.snapshot()
        if name not in snap.roots:
            raise ApiError(404, "NAME_UNKNOWN", f"repository {name} is not served here")
        return snap

    def locate(self, digest: Digest, size: int | None = None) -> Located | None:
        """The first source holding the blob (at `size`, when given)."""
        for source in self.sources:
            stored = source.reader.stored_size(digest)
            if stored is not None and (size is None or stored == size):
                return Located(source, digest, stored)
        return None

    async def manifest(self, name: str, reference: Digest | str) -> tuple[Descriptor, bytes]:
        """The descriptor and exact bytes of a manifest by tag or digest (404 otherwise)."""
        snap = await self.repository(name)
        if isinstance(reference, Digest):
            return await self._by_digest(reference)
        desc = snap.tags[name].get(reference)
        if desc is None:
            raise ApiError(404, "MANIFEST_UNKNOWN", f"no manifest {name}:{reference}")
        raw = await self._read(desc)
        return desc, raw

    async def _by_digest(self, digest: Digest) -> tuple[Descriptor, bytes]:
        unknown = ApiError(404, "MANIFEST_UNKNOWN", f"no manifest {digest}")
        found = self.locate(digest)
        if found is None or found.size > mt.MAX_MANIFEST_SIZE:
            raise unknown
        probe = Descriptor("application/json", digest, found.size)
        raw = await self._read(probe)
        try:
            parsed = parse_manifest(raw, None, digest=digest)
        except MirrorError:
            raise unknown from None
        return parsed.descriptor(), raw

    async def _read(self, desc: Descriptor) -> bytes:
        """The verified bytes of a small blob, from whichever source holds it."""
        found = self.locate(desc.digest, desc.size)
        if found is None:
            raise ApiError(404, "MANIFEST_UNKNOWN", f"manifest {desc.digest} is not stored")
        try:
            return await found.source.reader.blob_read(desc)
        except NotFound:
            raise ApiError(404, "MANIFEST_UNKNOWN", f"manifest {desc.digest} is gone") from None
        except ContentError as exc:
            raise ApiError(500, "MANIFEST_INVALID", f"stored manifest is damaged: {exc}") from None

    async def referrers(self, name: str, subject: Digest) -> list[dict[str, Any]]:
        """The descriptors of the manifests whose subject is `subject`, found among every
        manifest of the content (`name` must be served)."""
        snap = await self.repository(name)
        if snap.referrers is None:
            snap.referrers = await self._subjects(snap.everything)
        return list(snap.referrers.get(str(subject), []))

    async def _subjects(self, roots: list[Descriptor]) -> dict[str, list[dict[str, Any]]]:
        """Every manifest reachable from `roots` that names a subject, by subject (each once)."""
        out: dict[str, list[dict[str, Any]]] = {}
        seen: set[Digest] = set()
        todo = list(roots)
        while todo and len(seen) < MAX_WALK:
            desc = todo.pop()
            if desc.digest in seen or desc.media_type not in mt.MANIFESTS:
                continue
            seen.add(desc.digest)
            summary = await self._summary(desc)
            if summary is None:
                continue
            todo.extend(summary.children)
            if summary.subject is not None:
                out.setdefault(str(summary.subject), []).append(summary.entry)
        return out

    async def _summary(self, desc: Descriptor) -> _Summary | None:
        """What a manifest says of its children and subject (None: not stored, or not a
        manifest); kept once read, since a digest's content never changes (one not stored
        yet is asked again: a push or a sync may bring it)."""
        if desc.digest in self._summaries:
            return self._summaries[desc.digest]
        found = self.locate(desc.digest, desc.size)
        if found is None:
            return None
        try:
            manifest = await found.source.reader.manifest_by_descriptor(desc)
        except MirrorError:
            summary = None
        else:
            summary = _summarise(manifest)
        self._summaries[desc.digest] = summary
        return summary


def _summarise(manifest: ManifestLike) -> _Summary:
    entry: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": str(manifest.digest),
        "size": manifest.size,
    }
    artifact_type = manifest.artifact_type
    if artifact_type is None and isinstance(manifest, Manifest):
        artifact_type = manifest.config.media_type
    if artifact_type:
        entry["artifactType"] = artifact_type
    if manifest.annotations:
        entry["annotations"] = dict(manifest.annotations)
    children = manifest.manifests if isinstance(manifest, Index) else ()
    subject = manifest.subject.digest if manifest.subject is not None else None
    return _Summary(children, subject, entry)
