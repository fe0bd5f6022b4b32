"""Which fallback and digest tags of a layout go with the images that left its `index.json`.

A fallback tag (`repo:sha256-<hex>`, the index listing the referrers of a manifest) and a
cosign digest tag (`repo:sha256-<hex>.sig`, `.att`, `.sbom`) are about a manifest: an image
of the repository, a platform's manifest under one, or a referrer listed by another fallback
tag. When images leave, the tags of their repository about a manifest that left with them
and that nothing staying reaches go too, and so do the tags about what those listed (a
signature on an SBOM). Tags about a manifest no image reached before are left alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mirror.layout.index_file import ref_name_of, repository_of, untagged_from
from mirror.oci.attached import subject_of_tag

__all__ = ["Children", "orphaned_attachments"]

#: the digests and media types of the manifests an index entry lists (none for an image)
Children = Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]


def _repository(entry: dict[str, Any]) -> str:
    """The repository an entry belongs to: its name's, the name it had, or the bare one."""
    name = ref_name_of(entry) or untagged_from(entry) or ""
    return repository_of(name)


async def _reach(entries: Iterable[dict[str, Any]], children: Children) -> set[str]:
    """The digests of the manifests the entries are and list, to any depth."""
    seen: set[str] = set()
    pending = list(entries)
    while pending:
        entry = pending.pop()
        digest = str(entry.get("digest"))
        if digest in seen:
            continue
        seen.add(digest)
        pending += await children(entry)
    return seen


async def orphaned_attachments(
    entries: list[dict[str, Any]], departed: list[dict[str, Any]], children: Children
) -> set[int]:
    """The positions in `entries` of the fallback and digest tags that go with `departed`."""
    doomed: set[int] = set()
    for repository in sorted({_repository(e) for e in departed}):
        attached = {
            i: str(subject)
            for i, e in enumerate(entries)
            if (subject := subject_of_tag(ref_name_of(e) or "")) is not None
            and _repository(e) == repository
        }
        if not attached:
            continue
        staying = [
            e for i, e in enumerate(entries) if i not in attached and _repository(e) == repository
        ]
        reached = await _reach(staying, children)
        kept: set[int] = set()
        while found := {i for i, s in attached.items() if i not in kept and s in reached}:
            kept |= found
            reached |= await _reach((entries[i] for i in found), children)
        gone = await _reach((e for e in departed if _repository(e) == repository), children)
        while found := {i for i, s in attached.items() if i not in kept | doomed and s in gone}:
            doomed |= found
            gone |= await _reach((entries[i] for i in found), children)
    return doomed
