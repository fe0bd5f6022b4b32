"""Reading and editing a layout's `index.json` as JSON, keeping fields mirror does not know."""

from __future__ import annotations

import json
from typing import Any

from mirror.errors import LayoutError
from mirror.oci import mediatypes as mt
from mirror.support import jsonutil

__all__ = [
    "OCI_LAYOUT_BYTES",
    "REF_NAME",
    "add_entry",
    "empty_index",
    "parse_index",
    "remove_named",
    "serialize",
]

#: the `oci-layout` file mirror writes (image-spec 1.0.0)
OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'


REF_NAME = "org.opencontainers.image.ref.name"


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
    """Add an image entry with skopeo's semantics and return the new list.

    A name on the new entry is taken off any older entry that had it (the older entry stays,
    unnamed); an unnamed entry with the same digest is replaced rather than duplicated.
    """
    out = [dict(e) for e in entries]
    name = ref_name_of(new)
    if name is not None:
        for i, entry in enumerate(out):
            if ref_name_of(entry) == name:
                annotations = dict(entry["annotations"])
                del annotations[REF_NAME]
                out[i] = {k: v for k, v in entry.items() if k != "annotations"}
                if annotations:
                    out[i]["annotations"] = annotations
    for i, entry in enumerate(out):
        if entry.get("digest") == new.get("digest") and ref_name_of(entry) is None:
            out[i] = new
            return out
    out.append(new)
    return out


def remove_named(entries: list[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]], bool]:
    """Drop the entry carrying `name`; return the new list and whether one was dropped."""
    kept = [e for e in entries if ref_name_of(e) != name]
    return kept, len(kept) != len(entries)
