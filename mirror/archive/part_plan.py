"""Which blobs go into which part of a split bundle (pure: no I/O).

Units are an image with the things attached to it (its digest tags and referrers). Units go
largest first, each into the first part where the blobs it lacks there fit (first-fit
decreasing), so that an image is complete in one part wherever it fits one: a blob two
images share may be carried by two parts. A unit larger than a part is spread blob by blob,
largest first, each blob into the first part with room; its image is then complete only
with those parts together. A blob is never split: one larger than a part is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mirror.errors import InvalidReference

__all__ = ["TAR_END", "TAR_RECORD", "Unit", "check_fits", "member_cost", "plan_parts"]

#: a tar's two zero blocks at the end
TAR_END = 1024
#: tarfile pads an archive to a multiple of its record
TAR_RECORD = 10240
_BLOCK = 512
#: a ustar header holds a name of up to 100 bytes and a size below 8 GiB; past either, a pax
#: extension (a header and a block of records) comes before the member
_USTAR_NAME = 100
_USTAR_SIZE = 8**11


def member_cost(size: int, name: str = "") -> int:
    """The most bytes a tar member of `size` bytes named `name` (a blob's digest, whose member
    is `blobs/<alg>/<hex>`) takes: its header, a pax extension when one is needed, padding."""
    long = len(name) + len("blobs//") > _USTAR_NAME or size >= _USTAR_SIZE
    return (3 if long else 1) * _BLOCK + -(-size // _BLOCK) * _BLOCK


@dataclass(frozen=True)
class Unit:
    """What must stay together where it fits: its name (for messages) and the blobs (and
    manifests) it needs that the bundle carries."""

    name: str
    blobs: frozenset[str]


def _cost(blobs: frozenset[str] | set[str], sizes: Mapping[str, int]) -> int:
    return sum(member_cost(sizes[d], d) for d in blobs)


def _too_large(digest: str, size: int, owner: str) -> InvalidReference:
    return InvalidReference(
        f"blob {digest} of {owner} is {size} bytes: it does not fit in a part of this size "
        "with the headers (parts are never split inside a blob)"
    )


def check_fits(sizes: Mapping[str, int], max_size: int, owner: str) -> None:
    """InvalidReference naming the largest of `sizes` (blobs of `owner`) when even a part
    holding nothing else could not hold it: told as soon as an image is copied, before the
    next is fetched."""
    if not sizes:
        return
    largest = max(sizes, key=lambda d: (sizes[d], d))
    least = member_cost(sizes[largest], largest) + 3 * _BLOCK + TAR_END  # and oci-layout, index
    if least > max_size // TAR_RECORD * TAR_RECORD:
        raise _too_large(largest, sizes[largest], owner)


def plan_parts(units: Sequence[Unit], sizes: Mapping[str, int], room: int) -> list[set[str]]:
    """The blobs of each part, each part's blob members taking at most `room` bytes.

    Raises InvalidReference naming the largest blob (and a unit that needs it) when one
    blob alone does not fit in `room`.
    """
    if sizes:
        largest = max(sizes, key=lambda d: (sizes[d], d))
        if member_cost(sizes[largest], largest) > room:
            owner = next((u.name for u in units if largest in u.blobs), "the bundle")
            raise _too_large(largest, sizes[largest], owner)
    parts: list[set[str]] = []
    used: list[int] = []

    def place(blobs: set[str] | frozenset[str]) -> bool:
        for i, part in enumerate(parts):
            extra = _cost(blobs - part, sizes)
            if used[i] + extra <= room:
                part.update(blobs)
                used[i] += extra
                return True
        return False

    ordered = sorted(units, key=lambda u: (-_cost(u.blobs, sizes), u.name))
    for unit in ordered:
        if any(unit.blobs <= part for part in parts) or place(unit.blobs):
            continue
        if _cost(unit.blobs, sizes) <= room:
            parts.append(set(unit.blobs))
            used.append(_cost(unit.blobs, sizes))
            continue
        carried = set().union(*parts) if parts else set()
        for digest in sorted(unit.blobs - carried, key=lambda d: (-sizes[d], d)):
            if not place({digest}):
                parts.append({digest})
                used.append(member_cost(sizes[digest], digest))
    leftover = set(sizes) - (set().union(*parts) if parts else set())
    for digest in sorted(leftover, key=lambda d: (-sizes[d], d)):  # named by no unit
        if not place({digest}):
            parts.append({digest})
            used.append(member_cost(sizes[digest], digest))
    return parts or [set()]
