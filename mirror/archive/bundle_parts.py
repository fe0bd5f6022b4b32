"""Split bundles on the far side: the parts given (any order) listed, verified and pushed.

Each part given is verified alone (`verify_part`); a damaged one is left out as a missing one
is, and what the remaining parts hold complete is pushed: an image whose blobs lie in a
missing or damaged part is not pushed, and said so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.archive.bundle import (
    FULL_NAME,
    BundleImage,
    BundleRecord,
    PushedImage,
    admitted_images,
    check_left_out,
    push_images,
    target_of,
)
from mirror.archive.parts import PartInfo, missing_line, open_parts, read_parts, verify_part
from mirror.archive.unpack import read_record
from mirror.copy_options import CopyOptions
from mirror.errors import LayoutError
from mirror.events import ProgressSink, Silent
from mirror.layout.check import Flaw, Problem
from mirror.registry import RegistryClient, RegistryOptions

if TYPE_CHECKING:
    from mirror.trust.policy import Policy

__all__ = [
    "PartsChecked",
    "PartsPushed",
    "SetImage",
    "check_parts",
    "is_part",
    "push_parts",
]

_SUFFIX = re.compile(r"\.part-(\d{4,})$")


def is_part(path: Path) -> bool:
    """Whether `path` is a part of a split bundle (its record says so)."""
    record = read_record(path)
    return bool(record and "parts" in record)


@dataclass(frozen=True)
class SetImage:
    """One image of a split bundle: the parts it is complete in, the parts holding its blobs."""

    image: BundleImage
    parts: tuple[int, ...]
    needs: tuple[int, ...]

    def where(self) -> str:
        """`part 2`, or `parts 1+3 together`."""
        if self.parts:
            return f"part {self.parts[0]}"
        return f"parts {'+'.join(str(n) for n in self.needs)} together"


def set_images(contents: dict[str, Any]) -> list[SetImage]:
    """The images of a set, as its record lists them."""
    record = BundleRecord.from_json(contents, "the set's record")
    return [
        SetImage(image, tuple(raw.get("parts", ())), tuple(raw.get("needs", ())))
        for image, raw in zip(record.images, contents["images"], strict=True)
    ]


@dataclass
class PartsChecked:
    """Parts given, each verified alone: what each holds, what is wrong (one line each)."""

    name: str
    set_id: str
    count: int
    infos: list[PartInfo]
    images: list[SetImage]
    problems: list[Problem] = field(default_factory=list)
    damaged: set[int] = field(default_factory=set)

    def to_json(self) -> list[dict[str, Any]]:
        """Each part given: its file, number, set, the images complete in it, whether damaged."""
        return [
            {
                "file": str(info.path),
                "part": info.number,
                "count": info.count,
                "name": info.name,
                "set": info.set_id,
                "complete": [i.image.name for i in self.images if info.number in i.parts],
                "damaged": info.number in self.damaged,
            }
            for info in self.infos
        ]

    def holds(self, info: PartInfo) -> str:
        """One line: the part and what it holds."""
        whole = [i.image.name for i in self.images if info.number in i.parts]
        helped = [
            f"{i.image.name} ({i.where()})"
            for i in self.images
            if not i.parts and info.number in i.needs
        ]
        line = f"{info.path}: {info.label} (set {info.set_id[:12]})"
        line += f", complete here: {', '.join(whole) if whole else 'no image'}"
        if helped:
            line += f"; blobs for: {', '.join(helped)}"
        return line


def _guess_number(path: Path) -> int | None:
    found = _SUFFIX.search(path.name)
    return int(found.group(1)) if found else None


async def check_parts(
    paths: Sequence[Path],
    *,
    whole_set: bool,
    verify: bool = True,
    progress: ProgressSink | None = None,
) -> PartsChecked:
    """Verify each part in `paths` alone (unless not `verify`: the records only); with
    `whole_set`, a missing part is a problem too.

    A file whose part record cannot be read is named damaged (with the number its file name
    gives). LayoutError for parts of different sets or a part given twice.
    """
    sink = progress or Silent()
    infos, unreadable = await read_parts(paths)
    if not infos:
        raise LayoutError(unreadable[0][1] if unreadable else "no parts given")
    first = infos[0]
    checked = PartsChecked(first.name, first.set_id, first.count, infos, set_images(first.contents))
    for path, why in unreadable:
        number = _guess_number(path)
        label = f"part {number} of {first.count} of {first.name}" if number else str(path)
        checked.problems.append(Problem(Flaw.INVALID, str(path), f"{label} is damaged: {why}"))
        if number:
            checked.damaged.add(number)
    for info in infos if verify else ():
        sink.phase(f"verifying {info.path}")
        found = await verify_part(info)
        if found:
            checked.damaged.add(info.number)
            checked.problems.append(found[0])
    present = {i.number for i in infos} | checked.damaged
    missing = [n for n in range(1, first.count + 1) if n not in present]
    if whole_set and missing:
        line = missing_line(first.name, first.set_id, first.count, missing)
        checked.problems.append(Problem(Flaw.MISSING, first.name, line))
    return checked


@dataclass
class PartsPushed:
    """What a push from parts did: the images pushed, those not (name, why), the problems."""

    pushed: list[PushedImage]
    not_pushed: list[tuple[str, str]]
    problems: list[str]

    def failure(self) -> str | None:
        """One line saying what was wrong and what was not pushed, or None."""
        if not self.problems and not self.not_pushed:
            return None
        line = "; ".join(self.problems)
        if self.not_pushed:
            names = ", ".join(n for n, _ in self.not_pushed[:5])
            more = " …" if len(self.not_pushed) > 5 else ""
            count = len(self.not_pushed)
            line += f"{': ' if line else ''}{count} image{'' if count == 1 else 's'} not pushed: "
            line += names + more
        return line


async def push_parts(
    paths: Sequence[Path],
    destination: str,
    *,
    options: RegistryOptions | None = None,
    progress: ProgressSink | None = None,
    policy: Policy | None = None,
) -> PartsPushed:
    """Push every image the parts given hold complete to `REGISTRY[/PREFIX]`.

    Every part is verified first; a damaged one is left out like a missing one. A delta's
    left-out blobs are checked at the target before anything is written. Images whose blobs
    lie in a missing or damaged part are not pushed (`PartsPushed.not_pushed`). With
    `policy`, every image to push is admitted first, offline, from the signatures the parts
    carry (Refused for the first that is not: nothing is pushed).
    """
    opts = options or RegistryOptions()
    sink = progress or Silent()
    checked = await check_parts(paths, whole_set=True, progress=sink)
    good = [i for i in checked.infos if i.number not in checked.damaged]
    problems = [p.message for p in checked.problems]
    if not good:
        raise LayoutError(f"every part given is damaged, nothing pushed: {problems[0]}")
    part_set = await open_parts([i.path for i in good])
    reader = await part_set.reader()
    complete = {
        ((e.get("annotations") or {}).get(FULL_NAME), e.get("digest")) for e in reader.entries
    }
    ready, not_pushed = [], []
    for item in checked.images:
        if (item.image.name, item.image.digest) in complete:
            ready.append((item.image, target_of(item.image.name, destination)))
        else:
            not_pushed.append((item.image.name, f"its blobs are in {item.where()}"))
    record = BundleRecord.from_json(checked.infos[0].contents, "the set's record")
    copy_options = CopyOptions.for_registries(
        opts, referrers=record.referrers, digest_tags=record.digest_tags, progress=sink
    )
    where = f"the parts of {checked.infos[0].path.name.rsplit('.part-', 1)[0]}"
    images = [image for image, _ in ready]
    admitted = await admitted_images(reader, images, where, policy) if policy else {}
    async with RegistryClient(opts) as client:
        await check_left_out(reader, record, ready, client)
        pushed = await push_images(reader, ready, client, copy_options, admitted)
    return PartsPushed(pushed, not_pushed, problems)
