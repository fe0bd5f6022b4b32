"""Checking a layout (`verify`) and collecting its garbage (`gc`)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from mirror.errors import (
    ContentError,
    InvalidDigest,
    LayoutError,
    MirrorError,
)
from mirror.graph import GraphTooLarge, Node
from mirror.graph import walk as graph_walk
from mirror.layout.conformance import check_document, kind_of
from mirror.layout.store import MAX_INDEX_SIZE, Layout, check_file
from mirror.oci import mediatypes as mt
from mirror.oci.digest import ALGORITHMS, Digest
from mirror.oci.model import Descriptor, ManifestLike
from mirror.support import jsonutil
from mirror.support.fsutil import read_capped, real_dir, regular_size
from mirror.support.tasks import finish_in_thread, together

__all__ = ["Flaw", "GcReport", "Problem", "gc", "verify"]

_HASH_WORKERS = max(2, os.cpu_count() or 2)


class Flaw(StrEnum):
    """The kinds of things wrong with a layout (the text is what reports print)."""

    INDEX = "index"  # index.json unusable
    INVALID = "invalid"  # an entry or file that cannot be what it claims
    MISSING = "missing"  # a blob something names is not there
    CORRUPT = "corrupt"  # a blob whose bytes do not hash to its digest
    SIZE = "size"  # a blob of another size than its descriptor says
    MANIFEST = "manifest"  # a manifest that cannot be read or nests too deep
    SPEC = "spec"  # a document that breaks the image spec (strict verify)
    RECORD = "record"  # a bundle record that names what the bundle lacks


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a layout: what kind, about what, in one line."""

    kind: Flaw
    subject: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class _Walk:
    reachable: set[Digest] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    # problems that make the reachable set unreliable (gc must not run on it)
    blocking: list[Problem] = field(default_factory=list)
    #: also check each document against what the image spec requires
    strict: bool = False

    def add(self, problem: Problem, *, blocking: bool = False) -> None:
        self.problems.append(problem)
        if blocking:
            self.blocking.append(problem)


async def _walk(layout: Layout, *, strict: bool = False) -> _Walk:
    walk = _Walk(strict=strict)
    try:
        index = await layout.read_index()
    except LayoutError as exc:
        walk.add(Problem(Flaw.INDEX, "index.json", str(exc)), blocking=True)
        return walk
    if strict:
        for name, kind in (("oci-layout", "layout"), ("index.json", "layout-index")):
            raw = await asyncio.to_thread(read_capped, layout.path / name, MAX_INDEX_SIZE)
            _conform(walk, kind, raw, name)
    roots = []
    for i, entry in enumerate(index["manifests"]):
        where = f"index.json manifests[{i}]"
        try:
            roots.append(Node(Descriptor.from_json(entry, where), where))
        except (InvalidDigest, ContentError) as exc:
            walk.add(Problem(Flaw.INVALID, where, str(exc)), blocking=True)

    async def visit(node: Node) -> ManifestLike | None:
        return await _visit(layout, node.desc, node.where, walk)

    try:
        walk.reachable = (await graph_walk(roots, visit)).seen
    except GraphTooLarge as exc:
        walk.add(Problem(Flaw.MANIFEST, "index.json", str(exc)), blocking=True)
    return walk


async def _visit(layout: Layout, desc: Descriptor, where: str, walk: _Walk) -> ManifestLike | None:
    """Check one descriptor's file; the manifest to walk below it, if it is a sound one."""
    path = layout.blob_path(desc.digest)
    size = regular_size(path)
    if size is None:
        if await asyncio.to_thread(os.path.lexists, path):
            walk.add(
                Problem(Flaw.INVALID, str(desc.digest), f"{path} is not a regular file ({where})"),
                blocking=True,
            )
            return None
        if not desc.is_foreign:
            walk.add(
                Problem(Flaw.MISSING, str(desc.digest), f"missing blob {desc.digest} ({where})"),
                blocking=mt.is_manifest(desc.media_type),
            )
        return None
    if size != desc.size:
        walk.add(
            Problem(
                Flaw.SIZE,
                str(desc.digest),
                f"blob {desc.digest} has {size} bytes, {where} says {desc.size}",
            ),
            blocking=mt.is_manifest(desc.media_type),
        )
        return None
    if not mt.is_manifest(desc.media_type):
        if walk.strict and kind_of(desc.media_type) == "config":
            await _conform_config(layout, desc, walk)
        return None
    try:
        manifest = await layout.manifest_by_descriptor(desc)
    except (MirrorError, ValueError) as exc:
        walk.add(Problem(Flaw.MANIFEST, str(desc.digest), f"{where}: {exc}"), blocking=True)
        return None
    if walk.strict and (kind := kind_of(manifest.media_type)) is not None:
        _conform(walk, kind, manifest.raw, str(desc.digest))
    return manifest


def _conform(walk: _Walk, kind: str, raw: bytes, subject: str) -> None:
    """Add a problem for each way the document fails the image spec."""
    try:
        obj = jsonutil.loads(raw)
    except ValueError as exc:
        walk.add(Problem(Flaw.SPEC, subject, f"{subject}: not JSON ({exc})"))
        return
    for flaw in check_document(kind, obj):
        walk.add(Problem(Flaw.SPEC, subject, f"{subject} ({kind}): {flaw}"))


async def _conform_config(layout: Layout, desc: Descriptor, walk: _Walk) -> None:
    if desc.size > mt.MAX_MANIFEST_SIZE:
        walk.add(Problem(Flaw.SPEC, str(desc.digest), f"config {desc.digest} is over 4 MiB"))
        return
    try:
        raw = await layout.blob_read(desc)
    except (MirrorError, OSError):
        return  # missing or corrupt: the rehash says so
    _conform(walk, "config", raw, str(desc.digest))


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of a directory that is not a link (none when it is absent)."""
    real_dir(folder)
    try:
        with os.scandir(folder) as found:
            return sorted(found, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _blob_files(layout: Layout) -> list[tuple[Path, Digest | None, bool]]:
    """Every entry under `blobs/<alg>/`: its path, the digest its name makes (None when it is
    not one) and whether it is a regular file. Links are never followed."""
    out: list[tuple[Path, Digest | None, bool]] = []
    for alg_dir in _entries(layout.path / "blobs"):
        if not alg_dir.is_dir(follow_symlinks=False):
            continue
        for entry in _entries(Path(alg_dir.path)):
            digest: Digest | None
            try:
                digest = (
                    Digest(f"{alg_dir.name}:{entry.name}") if alg_dir.name in ALGORITHMS else None
                )
            except InvalidDigest:
                digest = None
            out.append((Path(entry.path), digest, entry.is_file(follow_symlinks=False)))
    return out


async def verify(layout: Layout, *, strict: bool = False) -> list[Problem]:
    """Re-hash every blob and check every referenced blob is present; list each problem found.

    `strict` also checks `oci-layout`, `index.json` and every manifest, index and image
    config an image reaches against what the image spec requires (`mirror.layout.conformance`).
    """
    walk = await _walk(layout, strict=strict)
    files = await asyncio.to_thread(_blob_files, layout)
    gate = asyncio.Semaphore(_HASH_WORKERS)

    async def rehash(path: Path, digest: Digest | None, regular: bool) -> Problem | None:
        rel = path.relative_to(layout.path)
        if not regular:
            return Problem(Flaw.INVALID, str(rel), f"{rel} is not a regular file")
        if digest is None:
            return Problem(Flaw.INVALID, str(rel), f"{rel} is not named by a valid digest")
        async with gate:
            try:
                size = regular_size(path)
                if size is None:
                    return Problem(Flaw.INVALID, str(rel), f"{rel} is not a regular file")
                await finish_in_thread(check_file, path, digest, size)
            except (ContentError, LayoutError) as exc:
                return Problem(Flaw.CORRUPT, str(digest), f"{rel}: {exc}")
            except OSError as exc:
                return Problem(Flaw.CORRUPT, str(digest), f"{rel}: cannot read ({exc.strerror})")
        return None

    found = await together(rehash(p, d, r) for p, d, r in files)
    return walk.problems + [p for p in found if p is not None]


@dataclass(frozen=True)
class GcReport:
    """What `gc` removed (or, in a dry run, would remove)."""

    removed: tuple[Digest, ...]
    freed_bytes: int
    temp_files: int


async def gc(layout: Layout, *, dry_run: bool = False) -> GcReport:
    """Delete blobs no image reaches and stale temporary files, under both layout locks.

    Waits for running writers to close the layout. Refuses (LayoutError) when the index or a
    manifest is unreadable, since then what is reachable is unknown.
    """
    if layout.is_writing:
        raise LayoutError("close this layout's writes before collecting garbage")
    await layout.prepare_writes()
    async with layout.writers_lock().hold(), layout.index_lock().hold():
        walk = await _walk(layout)
        if walk.blocking:
            raise LayoutError(f"not collecting garbage in {layout.path}: {walk.blocking[0]}")
        removed: list[Digest] = []
        freed = 0
        for path, digest, regular in await asyncio.to_thread(_blob_files, layout):
            size = regular_size(path) if regular else None
            if digest is None or digest in walk.reachable or size is None:
                continue  # only unreferenced regular files of ours are deleted, never a link
            removed.append(digest)
            freed += size
            if not dry_run:
                await asyncio.to_thread(path.unlink, missing_ok=True)
        temps = await asyncio.to_thread(_stale_temp_files, layout, dry_run)
    return GcReport(tuple(removed), freed, temps)


def _stale_temp_files(layout: Layout, dry_run: bool) -> int:
    """Temporary files and partial downloads; no writer is running while gc holds its lock."""
    count = 0
    for folder in ("tmp", "partial"):
        for entry in _entries(layout.path / ".mirror" / folder):
            if not entry.is_file(follow_symlinks=False):
                continue  # a link or a directory planted there is not ours to delete
            count += 1
            if not dry_run:
                Path(entry.path).unlink(missing_ok=True)
    return count
