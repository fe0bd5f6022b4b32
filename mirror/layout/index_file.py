"""Reading and editing a layout's `index.json` as JSON, keeping fields mirror does not know."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mirror.errors import LayoutError
from mirror.oci import mediatypes as mt
from mirror.oci.attached import is_attached_tag
from mirror.support import jsonutil

__all__ = [
    "OCI_LAYOUT_BYTES",
    "REF_NAME",
    "UNTAGGED_AT",
    "UNTAGGED_FROM",
    "Edited",
    "Retention",
    "add_entry",
    "empty_index",
    "list_entry",
    "parse_index",
    "ref_name_of",
    "remove_digest",
    "remove_named",
    "repository_of",
    "serialize",
    "untag",
    "untagged_from",
]

#: the `oci-layout` file mirror writes (image-spec 1.0.0)
OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'


REF_NAME = "org.opencontainers.image.ref.name"
#: on an image kept after it lost its last name (`Retention`): the name it had, and when
UNTAGGED_FROM = "io.mirror.untagged.from"
UNTAGGED_AT = "io.mirror.untagged.at"


@dataclass
class Retention:
    """How many images that lost their last name a layout keeps listed, per repository (the
    part of a name before its last colon; empty for bare names), newest first."""

    default: int = 0
    per_repository: dict[str, int] = field(default_factory=dict)

    def keep(self, repository: str) -> int:
        """The untagged images of `repository` to keep."""
        return self.per_repository.get(repository, self.default)


@dataclass(frozen=True)
class Edited:
    """An edit of the entries of `index.json`: the entries now, the entries that left them,
    and the names taken off."""

    entries: list[dict[str, Any]]
    departed: list[dict[str, Any]]
    unnamed: list[str]


def empty_index() -> dict[str, Any]:
    """A new, empty image index."""
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def parse_index(raw: bytes, where: str) -> dict[str, Any]:
    """Parse `index.json` bytes, raising LayoutError with one line naming `where` on any flaw."""
    try:
        obj = jsonutil.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayoutError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("manifests", []), list):
        raise LayoutError(f"{where} is not an image index (no 'manifests' list)")
    if obj.get("schemaVersion") != 2:
        raise LayoutError(f"{where}: schemaVersion must be 2")
    obj.setdefault("manifests", [])
    for i, entry in enumerate(obj["manifests"]):
        if not isinstance(entry, dict):
            raise LayoutError(f"{where}: manifests[{i}] is not a JSON object")
    return obj


def serialize(index: dict[str, Any]) -> bytes:
    """The bytes written to `index.json` (compact, like skopeo writes it)."""
    return json.dumps(index, separators=(",", ":")).encode()


def ref_name_of(entry: dict[str, Any]) -> str | None:
    """The image name an index entry carries, if any."""
    annotations = entry.get("annotations")
    if isinstance(annotations, dict):
        name = annotations.get(REF_NAME)
        return name if isinstance(name, str) and name else None
    return None


def add_entry(entries: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries with `new` listed (`list_entry`, keeping no untagged image)."""
    return list_entry(entries, new).entries


def list_entry(
    entries: list[dict[str, Any]],
    new: dict[str, Any],
    retention: Retention | None = None,
    now: str = "",
) -> Edited:
    """List an image entry: `new` takes the place of the entry that had its name (that image
    is untagged, see `untag`) and of an unnamed entry with its digest; a bare entry (no
    annotations) for an image listed under a name already adds nothing. `now` is the time an
    untagged image is marked with."""
    name = ref_name_of(new)
    digest = new.get("digest")
    named = any(e.get("digest") == digest and ref_name_of(e) for e in entries)
    if not new.get("annotations") and named:
        return Edited([dict(e) for e in entries], [], [])
    out: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    placed = False
    for entry in entries:
        had_name = name is not None and ref_name_of(entry) == name
        if had_name or (ref_name_of(entry) is None and entry.get("digest") == digest):
            if not placed:
                out.append(new)
                placed = True
            if had_name:
                lost.append(entry)
            continue
        out.append(dict(entry))
    if not placed:
        out.append(new)
    return untag(out, lost, retention or Retention(), now)


def remove_named(
    entries: list[dict[str, Any]], name: str, retention: Retention | None = None, now: str = ""
) -> Edited:
    """Take `name` off the layout (its image is untagged, see `untag`)."""
    lost = [e for e in entries if ref_name_of(e) == name]
    kept = [dict(e) for e in entries if ref_name_of(e) != name]
    return untag(kept, lost, retention or Retention(), now)


def remove_digest(entries: list[dict[str, Any]], digest: str) -> Edited:
    """Drop every entry of the manifest `digest`, named or not (no retention: it is deleted)."""
    gone = [e for e in entries if e.get("digest") == digest]
    kept = [dict(e) for e in entries if e.get("digest") != digest]
    return Edited(kept, gone, [n for e in gone if (n := ref_name_of(e))])


def untag(
    entries: list[dict[str, Any]], lost: list[dict[str, Any]], retention: Retention, now: str
) -> Edited:
    """Settle the entries that lost their name, `entries` being what stays: an image listed
    elsewhere, or a fallback or digest tag's manifest, leaves; another is kept unnamed (marked
    with the name it had and `now`) when its repository retains untagged images, and then
    only the newest `retention.keep(repository)` untagged images of that repository stay."""
    out = list(entries)
    departed: list[dict[str, Any]] = []
    touched: set[str] = set()
    for entry in lost:
        name = ref_name_of(entry) or ""
        repository = repository_of(name)
        listed = any(e.get("digest") == entry.get("digest") for e in out)
        if is_attached_tag(name) or listed or retention.keep(repository) < 1:
            departed.append(entry)
        else:
            out.append(_untagged(entry, name, now))
        if not is_attached_tag(name):
            touched.add(repository)
    for repository in sorted(touched):
        out, evicted = _evict(out, repository, retention.keep(repository))
        departed += evicted
    return Edited(out, departed, [n for e in lost if (n := ref_name_of(e))])


def _untagged(entry: dict[str, Any], name: str, now: str) -> dict[str, Any]:
    """The entry without its name, marked with that name and the time it lost it."""
    annotations = {k: v for k, v in entry.get("annotations", {}).items() if k != REF_NAME}
    annotations |= {UNTAGGED_FROM: name, UNTAGGED_AT: now}
    return {**{k: v for k, v in entry.items() if k != "annotations"}, "annotations": annotations}


def untagged_from(entry: dict[str, Any]) -> str | None:
    """The name an image kept untagged had (None for any other entry)."""
    annotations = entry.get("annotations")
    if ref_name_of(entry) is not None or not isinstance(annotations, dict):
        return None
    name = annotations.get(UNTAGGED_FROM)
    return name if isinstance(name, str) else None


def repository_of(name: str) -> str:
    """The repository of a layout image name `repository:tag` (empty for a bare name)."""
    return name.rsplit(":", 1)[0] if ":" in name else ""


def _evict(
    entries: list[dict[str, Any]], repository: str, keep: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the newest `keep` untagged images of `repository` (by the time each was untagged,
    then by position); the entries that stay and those that leave."""
    untagged = [
        (str(e["annotations"].get(UNTAGGED_AT, "")), i)
        for i, e in enumerate(entries)
        if (name := untagged_from(e)) is not None and repository_of(name) == repository
    ]
    doomed = {i for _, i in sorted(untagged)[: max(0, len(untagged) - keep)]}
    return (
        [e for i, e in enumerate(entries) if i not in doomed],
        [e for i, e in enumerate(entries) if i in doomed],
    )
