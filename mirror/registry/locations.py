"""Where blobs are in a registry, so that a blob crosses the wire once per registry: every
later need for it in another repository there is a cross-repository mount.

Within a run, each blob uploaded, mounted or found in a repository (and each read from a
source repository) is remembered; two images that need the same blob in one registry at the
same moment take turns (`claim`): one uploads, the other then mounts. Across runs the memory
is kept per registry host under `$XDG_STATE_HOME/mirror/blob-locations/` (like skopeo's
blob-info cache): a JSON file per host, merged and replaced atomically under a lock, so
processes running side by side lose nothing; bounded (`MAX_DIGESTS` per host, the oldest
forgotten first; `MAX_REPOSITORIES` per blob). It is never trusted: a mount the registry
declines falls back to an upload, and the entry is dropped. A file that cannot be read (cut
short, corrupted, hostile) counts as empty and is rewritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from mirror.errors import InvalidDigest
from mirror.oci.digest import Digest
from mirror.oci.reference import is_valid_repository
from mirror.support.statefile import host_file, read_state, replace_merged

__all__ = ["MAX_DIGESTS", "MAX_REPOSITORIES", "BlobLocations"]

_log = logging.getLogger("mirror.registry")
#: the most blobs remembered per registry host (the least recently seen are forgotten first)
MAX_DIGESTS = 20_000
#: the most repositories remembered per blob
MAX_REPOSITORIES = 3
#: the largest memory file read (a bigger one is treated as damaged)
MAX_FILE = 16 * 1024 * 1024
_FORMAT = 1

#: digest -> repository -> when it was last seen there (Unix time)
Known = dict[str, dict[str, float]]


class BlobLocations:
    """Blob locations per registry host: in memory for a run, and (with `directory`) kept
    across runs."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._known: dict[str, Known] = {}
        self._dirty: set[str] = set()
        self._forgotten: dict[str, set[tuple[str, str]]] = {}
        self._claims: dict[tuple[str, str], asyncio.Lock] = {}
        #: (registry, digest, repository) known to hold the blob now: seen in this run
        self._here: set[tuple[str, str, str]] = set()

    def _host(self, registry: str) -> Known:
        if registry not in self._known:
            self._known[registry] = self._read(registry) if self.directory else {}
        return self._known[registry]

    def _file(self, registry: str) -> Path:
        assert self.directory is not None
        return host_file(self.directory, registry)

    def _read(self, registry: str) -> Known:
        """The remembered locations of one host; empty when there are none or they are
        unreadable."""
        return read_state(
            self._file(registry),
            MAX_FILE,
            _parse,
            dict,
            what="blob location memory",
            instead="starting afresh",
            log=_log,
        )

    def candidates(self, registry: str, digest: Digest, exclude: str) -> list[str]:
        """Repositories of `registry` where `digest` was seen, most recent first."""
        seen = self._host(registry).get(str(digest), {})
        ranked = sorted(seen.items(), key=lambda item: item[1], reverse=True)
        return [repo for repo, _ in ranked if repo != exclude][:MAX_REPOSITORIES]

    def remember(self, registry: str, digest: Digest, repository: str) -> None:
        """`digest` is in `repository` of `registry` now."""
        seen = self._host(registry).setdefault(str(digest), {})
        seen[repository] = time.time()
        if len(seen) > MAX_REPOSITORIES:
            del seen[min(seen, key=lambda repo: seen[repo])]
        self._forgotten.get(registry, set()).discard((str(digest), repository))
        self._here.add((registry, str(digest), repository))
        self._dirty.add(registry)

    def here(self, registry: str, digest: Digest, repository: str) -> bool:
        """True when this run put or saw `digest` in `repository` (not a memory of an
        earlier run: that is only a mount candidate)."""
        return (registry, str(digest), repository) in self._here

    def forget(self, registry: str, digest: Digest, repository: str) -> None:
        """`digest` turned out not to be (mountable) in `repository`: drop the entry."""
        seen = self._host(registry).get(str(digest), {})
        seen.pop(repository, None)
        self._here.discard((registry, str(digest), repository))
        self._forgotten.setdefault(registry, set()).add((str(digest), repository))
        self._dirty.add(registry)

    def claim(self, registry: str, digest: Digest) -> asyncio.Lock:
        """The lock that makes transfers of one blob into one registry take turns."""
        return self._claims.setdefault((registry, str(digest)), asyncio.Lock())

    async def save(self) -> None:
        """Merge what this run learned into the memory files (under each file's lock)."""
        if self.directory is None or not self._dirty:
            return
        await replace_merged(self.directory, self._dirty, self._merged)
        self._dirty.clear()
        self._forgotten.clear()

    def _merged(self, registry: str) -> bytes:
        """What the host's file holds, with what this run learned and forgot merged in."""
        merged = _merge(self._read(registry), self._known.get(registry, {}))
        for digest, repository in self._forgotten.get(registry, set()):
            merged.get(digest, {}).pop(repository, None)
        return _serialize(_bounded(merged))


def _parse(obj: Any) -> Known:
    """The locations of a memory file, every entry checked (ValueError when malformed)."""
    if not isinstance(obj, dict) or obj.get("version") != _FORMAT:
        raise ValueError("not a blob location memory")
    blobs = obj.get("blobs")
    if not isinstance(blobs, dict):
        raise ValueError("no blobs table")
    known: Known = {}
    for digest, seen in list(blobs.items())[:MAX_DIGESTS]:
        try:
            Digest(digest)
        except InvalidDigest:
            continue
        if not isinstance(seen, dict):
            continue
        kept = {
            repo: float(when)
            for repo, when in list(seen.items())[:MAX_REPOSITORIES]
            if is_valid_repository(repo) and isinstance(when, int | float)
        }
        if kept:
            known[digest] = kept
    return known


def _merge(older: Known, newer: Known) -> Known:
    """Both memories, each location with its latest time."""
    merged = {digest: dict(seen) for digest, seen in older.items()}
    for digest, seen in newer.items():
        target = merged.setdefault(digest, {})
        for repo, when in seen.items():
            target[repo] = max(when, target.get(repo, 0.0))
    return merged


def _bounded(known: Known) -> Known:
    """At most MAX_DIGESTS blobs (the most recently seen) and MAX_REPOSITORIES each."""
    trimmed = {
        digest: dict(sorted(seen.items(), key=lambda i: i[1], reverse=True)[:MAX_REPOSITORIES])
        for digest, seen in known.items()
        if seen
    }
    newest = sorted(trimmed, key=lambda d: max(trimmed[d].values()), reverse=True)
    return {digest: trimmed[digest] for digest in newest[:MAX_DIGESTS]}


def _serialize(known: Known) -> bytes:
    return json.dumps({"version": _FORMAT, "blobs": known}, separators=(",", ":")).encode()
