"""Split bundles: a bundle written as parts `OUT.part-0001` … that each stand alone.

Every part is a complete plain-tar bundle (its record first, `oci-layout`, an `index.json`
naming the images complete in it, their blobs, and blobs it carries for images that other
parts complete). Its record adds `parts`: the set's id and name, the part's number, how many
parts there are, and `contents` (every image and index entry of the set with the parts that
complete it, every blob with the parts that carry it), sealed by `digest` (sha256 of the
contents' canonical JSON), so parts of two sets are never mixed and a changed record shows.
No part depends on being joined: an image is read from one part, or from the parts that
together hold its blobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror.archive.pack import pack_layout
from mirror.archive.part_plan import TAR_END, TAR_RECORD, Unit, member_cost, plan_parts
from mirror.archive.reader import ArchiveReader
from mirror.archive.unpack import read_record
from mirror.errors import BlobNotFound, InvalidReference, LayoutError, MirrorError
from mirror.graph import walk_image
from mirror.layout.check import Flaw, Problem
from mirror.layout.reading import BlobSpan, LayoutReader
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor

__all__ = [
    "MAX_PARTS",
    "NotAPart",
    "PartInfo",
    "PartSet",
    "SetReader",
    "missing_line",
    "open_parts",
    "part_info",
    "part_path",
    "read_parts",
    "verify_part",
    "write_parts",
]

_ATTACHED = re.compile(r"sha256-([0-9a-f]{64})")
_NAME = "org.opencontainers.image.ref.name"
_TRIES = 8
#: the most parts a set may have (a record from elsewhere claims no more)
MAX_PARTS = 10_000


def part_path(out: Path, number: int) -> Path:
    """The file of part `number` of the set written as `out`."""
    return out.with_name(f"{out.name}.part-{number:04d}")


def missing_line(name: str, set_id: str, count: int, missing: list[int]) -> str:
    """One line naming the parts `missing` of set `name` by number and file."""
    which = ", ".join(str(n) for n in missing)
    files = ", ".join(part_path(Path(name), n).name for n in missing[:3])
    more = " …" if len(missing) > 3 else ""
    verb = f"part {which} of {count} is" if len(missing) == 1 else f"parts {which} of {count} are"
    return f"{name} (set {set_id[:12]}): {verb} missing ({files}{more})"


def _seal(contents: dict[str, Any]) -> str:
    raw = json.dumps(contents, sort_keys=True, separators=(",", ":")).encode()
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry of the whole bundle's `index.json` and every blob and manifest it needs."""

    json: dict[str, Any]
    needs: frozenset[str]

    @property
    def name(self) -> str:
        """The entry's name, for messages and grouping."""
        annotations = self.json.get("annotations") or {}
        return str(annotations.get(_NAME) or self.json.get("digest"))


def _units(entries: Sequence[Entry], carried: set[str]) -> list[Unit]:
    """Each image with what is attached to it, to any depth (its digest tags, its referrers'
    fallback-tag indexes, and theirs)."""
    owners: list[int] = list(range(len(entries)))
    for i, entry in enumerate(entries):
        found = _ATTACHED.search(entry.name)
        if found is None:
            continue
        subject = f"sha256:{found.group(1)}"
        holders = [j for j, e in enumerate(entries) if j != i and subject in e.needs]
        plain = [j for j in holders if not _ATTACHED.search(entries[j].name)]
        if plain or holders:
            owners[i] = (plain or holders)[0]

    def root(i: int) -> int:
        seen = {i}
        while owners[i] != i and owners[i] not in seen:
            i = owners[i]
            seen.add(i)
        return i

    grouped: dict[int, set[str]] = {}
    for i, entry in enumerate(entries):
        grouped.setdefault(root(i), set()).update(entry.needs & carried)
    return [Unit(entries[i].name, frozenset(blobs)) for i, blobs in grouped.items()]


def _top_cost(*sizes: int) -> int:
    return sum(member_cost(s) for s in sizes) + TAR_END  # short names: no pax extension


@dataclass
class _Plan:
    parts: list[set[str]]
    records: list[bytes] = field(default_factory=list)
    indexes: list[bytes] = field(default_factory=list)


def _records(
    record: dict[str, Any],
    entries: Sequence[Entry],
    parts: list[set[str]],
    set_id: str,
    name: str,
    omitted: frozenset[str],
    carried: dict[str, int],
) -> tuple[list[bytes], list[bytes]]:
    """Each part's record and `index.json`."""
    numbers = range(1, len(parts) + 1)
    complete = [
        [n for n in numbers if e.needs - omitted <= parts[n - 1]] for e in entries
    ]  # the parts each entry is complete in
    holders = {d: [n for n in numbers if d in parts[n - 1]] for d in set().union(*parts)}
    by_name = {
        (e.json.get("annotations") or {}).get("io.containerd.image.name"): (e, c)
        for e, c in zip(entries, complete, strict=True)
    }

    def image_parts(image: dict[str, Any]) -> dict[str, Any]:
        entry, where = by_name.get(image["name"], (None, []))
        needs = sorted({n for d in (entry.needs if entry else ()) for n in holders.get(d, [])})
        return {**image, "parts": where, "needs": needs}

    contents = {
        **record,
        "set": set_id,
        "name": name,
        "count": len(parts),
        "images": [image_parts(i) for i in record["images"]],
        "blobs": [
            {"digest": d, "size": carried[d], "parts": holders.get(d, [])} for d in sorted(carried)
        ],
        "index": [{"entry": e.json, "parts": c} for e, c in zip(entries, complete, strict=True)],
    }
    seal = _seal(contents)
    sizes = {b["digest"]: b["size"] for b in record["blobs"]} | carried
    records, indexes = [], []
    for n in numbers:
        mine = [e for e, c in zip(entries, complete, strict=True) if n in c]
        names = {(e.json.get("annotations") or {}).get("io.containerd.image.name") for e in mine}
        needs = set().union(*(e.needs for e in mine)) if mine else set()
        own = {
            **record,
            "images": [i for i in record["images"] if i["name"] in names],
            "blobs": [{"digest": d, "size": sizes[d]} for d in sorted(needs) if d in sizes],
            "omitted": sorted(needs & omitted),
            "parts": {
                "set": set_id,
                "name": name,
                "part": n,
                "count": len(parts),
                "digest": seal,
                "contents": contents,
            },
        }
        records.append(json.dumps(own, separators=(",", ":")).encode())
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
        indexes.append(json.dumps({**index, "manifests": [e.json for e in mine]}).encode())
    return records, indexes


def write_parts(
    layout_dir: Path,
    out: Path,
    record: dict[str, Any],
    entries: Sequence[Entry],
    blobs: dict[str, int],
    max_size: int,
) -> list[Path]:
    """Write the bundle assembled in `layout_dir` as parts of `out`, each at most `max_size`
    bytes; `record` is the whole bundle's record, `entries` its index entries with what each
    needs, `blobs` the size of everything they need (referrers' blobs too). Raises
    InvalidReference when a blob does not fit in a part."""
    omitted = frozenset(record["omitted"])
    sizes = {d: size for d, size in blobs.items() if d not in omitted}
    units = _units(entries, set(sizes))
    layout_bytes = len((layout_dir / "oci-layout").read_bytes())
    set_id = secrets.token_hex(16)
    reserve = _top_cost(0, 0, layout_bytes)  # grows to what the records take
    for _ in range(_TRIES):
        # a part is padded to whole tar records: what fits in the last whole one is usable
        plan = _Plan(plan_parts(units, sizes, max_size // TAR_RECORD * TAR_RECORD - reserve))
        plan.records, plan.indexes = _records(
            record, entries, plan.parts, set_id, out.name, omitted, sizes
        )
        top = max(
            _top_cost(len(r), len(i), layout_bytes)
            for r, i in zip(plan.records, plan.indexes, strict=True)
        )
        if top <= reserve:
            break
        reserve = top  # monotonic: the records of a plan with more parts only grow
    else:
        raise LayoutError(f"cannot plan the parts of {out}: the records keep growing")
    if len(plan.parts) > MAX_PARTS:
        raise InvalidReference(
            f"{out} would take {len(plan.parts)} parts, more than {MAX_PARTS}: "
            "choose a larger part size"
        )
    written = []
    for n, held in enumerate(plan.parts, start=1):
        path = part_path(out, n)
        pack_layout(
            layout_dir,
            path,
            compress=False,
            record=json.loads(plan.records[n - 1]),
            only=frozenset(held),
            index=plan.indexes[n - 1],
        )
        written.append(path)
    _drop_stale(out, len(written))
    return written


def _drop_stale(out: Path, count: int) -> None:
    """Remove the parts past `count` that an earlier set written as `out` left (a glob of
    `OUT.part-*` would give them with the new set's); anything else is left alone."""
    number = count + 1
    while (path := part_path(out, number)).is_file():
        try:
            info = part_info(read_record(path), path)
        except LayoutError:
            return
        if info is None or info.name != out.name:
            return
        path.unlink()
        number += 1


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartInfo:
    """What a part's record says of it and of its set."""

    path: Path
    set_id: str
    name: str
    number: int
    count: int
    seal: str
    record: dict[str, Any]

    @property
    def contents(self) -> dict[str, Any]:
        """The whole set's contents (the same in every part of a set)."""
        contents: dict[str, Any] = self.record["parts"]["contents"]
        return contents

    @property
    def label(self) -> str:
        """`part 2 of 3 of NAME`, for messages."""
        return f"part {self.number} of {self.count} of {self.name}"

    def blobs(self) -> dict[str, int]:
        """The blobs this part carries, by the set's record."""
        return {
            b["digest"]: int(b["size"]) for b in self.contents["blobs"] if self.number in b["parts"]
        }


def part_info(record: dict[str, Any] | None, path: Path) -> PartInfo | None:
    """The part a bundle record describes; None for a bundle that is not a part; LayoutError
    naming `path` for a malformed part record or one whose contents do not match its seal."""
    parts = record.get("parts") if record else None
    if parts is None or record is None:
        return None
    try:
        contents = parts["contents"]
        info = PartInfo(
            path,
            str(parts["set"]),
            str(parts["name"]),
            int(parts["part"]),
            int(parts["count"]),
            str(parts["digest"]),
            record,
        )
        consistent = (
            contents["set"] == info.set_id
            and contents["count"] == info.count
            and contents["name"] == info.name
            and 1 <= info.number <= info.count <= MAX_PARTS
            and _well_formed(contents)
        )
    except (KeyError, TypeError, ValueError, AttributeError, MirrorError):
        raise LayoutError(f"{path}: the part record is malformed") from None
    if not consistent:
        raise LayoutError(f"{path}: the part record is malformed")
    if _seal(contents) != info.seal:
        raise LayoutError(f"{path}: the part record does not match its seal (damaged)")
    return info


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_PARTS for n in value
    )


def _well_formed(contents: dict[str, Any]) -> bool:
    """Whether the set's contents have the shape readers rely on (a record from elsewhere)."""
    for blob in contents["blobs"]:
        Digest(blob["digest"])
        int(blob["size"])
        if not _numbers(blob["parts"]):
            return False
    entries = contents["index"]
    images = contents["images"]
    return (
        isinstance(contents.get("omitted", []), list)
        and isinstance(entries, list)
        and all(isinstance(e["entry"], dict) and _numbers(e["parts"]) for e in entries)
        and isinstance(images, list)
        and all(_numbers(i.get("parts", [])) and _numbers(i.get("needs", [])) for i in images)
    )


class NotAPart(LayoutError):
    """A file given as a part is a bundle (or archive) that is not one: a mistake, not damage."""


def _read_one(path: Path) -> PartInfo:
    info = part_info(read_record(path), path)
    if info is None:
        raise NotAPart(f"{path} is not a part of a split bundle")
    return info


async def read_parts(paths: Sequence[Path]) -> tuple[list[PartInfo], list[tuple[Path, str]]]:
    """The parts' records, in part order, checked to be of one set and each there once; the
    files whose record cannot be read beside them (path, why). LayoutError for parts of
    different sets, a part given twice, or a file that is no part (`NotAPart`)."""
    infos: list[PartInfo] = []
    unreadable: list[tuple[Path, str]] = []
    for path in paths:
        try:
            info = await asyncio.to_thread(_read_one, path)
        except NotAPart:
            raise
        except LayoutError as exc:
            unreadable.append((path, str(exc)))
            continue
        if infos and (info.set_id, info.seal) != (infos[0].set_id, infos[0].seal):
            raise LayoutError(
                f"{path} is {info.label} (set {info.set_id[:12]}), not of the set of "
                f"{infos[0].path} ({infos[0].label}, set {infos[0].set_id[:12]}): "
                "parts of different sets are never mixed"
            )
        twin = next((i for i in infos if i.number == info.number), None)
        if twin is not None:
            if await asyncio.to_thread(os.path.samefile, twin.path, path):
                continue
            raise LayoutError(f"{info.label} is given twice: {twin.path} and {path}")
        infos.append(info)
    return sorted(infos, key=lambda i: i.number), unreadable


class SetReader(LayoutReader):
    """Parts read together as one layout (a source only): the index entries the given parts
    hold complete, each blob read from the first part that carries it."""

    def __init__(self, readers: Sequence[ArchiveReader], entries: list[Any], where: str) -> None:
        self.readers = list(readers)
        self.entries = entries
        self.where = where

    async def read_index(self) -> dict[str, Any]:
        """The entries complete in these parts, as an `index.json`."""
        return {"schemaVersion": 2, "manifests": self.entries}

    def _holder(self, digest: Digest, size: int | None = None) -> ArchiveReader | None:
        for reader in self.readers:
            stored = reader.stored_size(digest)
            if stored is not None and (size is None or stored == size):
                return reader
        return None

    def stored_size(self, digest: Digest) -> int | None:
        """The size of the blob in the first part that carries it, or None."""
        holder = self._holder(digest)
        return None if holder is None else holder.stored_size(digest)

    async def open_span(self, desc: Descriptor) -> BlobSpan:
        """The blob opened in a part that carries it at its size."""
        holder = self._holder(desc.digest, desc.size) or self._holder(desc.digest)
        if holder is None:
            return await self.readers[0].open_span(desc) if self.readers else _absent(desc)
        return await holder.open_span(desc)


def _absent(desc: Descriptor) -> BlobSpan:
    raise BlobNotFound(f"blob {desc.digest} is in none of the parts given")


@dataclass
class PartSet:
    """Parts of one split bundle, as given: each present part's record and reader."""

    name: str
    set_id: str
    count: int
    infos: list[PartInfo]
    readers: list[ArchiveReader]
    #: files given whose part record could not be read (path, why)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def contents(self) -> dict[str, Any]:
        """The whole set's contents."""
        return self.infos[0].contents

    @property
    def missing(self) -> list[int]:
        """The numbers of the parts not given."""
        present = {i.number for i in self.infos}
        return [n for n in range(1, self.count + 1) if n not in present]

    def missing_line(self) -> str | None:
        """One line naming the missing parts, or None when every part is here."""
        missing = self.missing
        return missing_line(self.name, self.set_id, self.count, missing) if missing else None

    async def reader(self) -> SetReader:
        """The parts read together: every index entry of the set whose manifests and blobs
        (a delta's left-out blobs excepted) these parts hold."""
        entries = [e["entry"] for e in self.contents["index"]]
        everything = SetReader(self.readers, entries, f"bundle {self.name}")
        omitted = set(self.contents.get("omitted") or ())
        complete = []
        for entry in entries:
            if await _holds(everything, entry, omitted):
                complete.append(entry)
        return SetReader(self.readers, complete, f"bundle {self.name}")


async def _holds(reader: SetReader, entry: dict[str, Any], omitted: set[str]) -> bool:
    try:
        desc = Descriptor.from_json(entry, "index entry")
        graph = await walk_image(
            await reader.manifest_by_descriptor(desc),
            reader.manifest_by_descriptor,
            include_foreign=False,
        )
    except MirrorError:
        return False
    return all(
        str(b.digest) in omitted or reader.stored_size(b.digest) == b.size
        for b in graph.blobs.values()
    )


async def open_parts(paths: Sequence[Path]) -> PartSet:
    """Open the part files `paths` (any order) of one split bundle, each read in place.

    Checked: every file is a part whose record matches its seal, all of one set, each part
    once (the same file twice counts once). Raises LayoutError naming the file otherwise.
    Missing parts are not an error: `PartSet.missing` and `missing_line()` name them. Blobs
    are not re-hashed here (`verify_part` does); reads through the readers are verified.
    """
    infos, unreadable = await read_parts(paths)
    if unreadable:
        raise LayoutError(unreadable[0][1])
    if not infos:
        raise LayoutError("no parts given")
    readers = [await ArchiveReader.open(i.path) for i in infos]
    first = infos[0]
    return PartSet(first.name, first.set_id, first.count, infos, readers)


async def verify_part(info: PartInfo) -> list[Problem]:
    """Re-hash every blob the part carries, check its index against the set's record, and walk
    every image its index names (each complete in it, a delta's left-out blobs excepted);
    each problem names the part."""
    where = f"{info.label} ({info.path})"
    try:
        reader = await ArchiveReader.open(info.path)
    except LayoutError as exc:
        return [Problem(Flaw.INVALID, str(info.path), f"{where} is damaged: {exc}")]
    problems = []
    for digest, size in sorted(info.blobs().items()):
        desc = Descriptor("application/octet-stream", Digest(digest), size)
        try:
            async for _ in reader.blob_open(desc):
                pass
        except MirrorError as exc:
            problems.append(Problem(Flaw.CORRUPT, digest, f"{where} is damaged: {exc}"))
    expected = [e["entry"] for e in info.contents["index"] if info.number in e["parts"]]
    index = await reader.read_index()
    if _canonical(index.get("manifests")) != _canonical(expected):
        problems.append(
            Problem(Flaw.RECORD, str(info.path), f"{where}: its index.json is not the set's")
        )
    alone = SetReader([reader], expected, where)
    omitted = set(info.contents.get("omitted") or ())
    for entry in expected:
        if not await _holds(alone, entry, omitted):
            name = (entry.get("annotations") or {}).get(_NAME) or entry.get("digest")
            problems.append(
                Problem(Flaw.MISSING, str(name), f"{where}: {name} is not complete in it")
            )
    return problems


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
