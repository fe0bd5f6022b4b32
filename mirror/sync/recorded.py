"""What a sync recorded of its registry destinations, so that a no-op run asks no HEAD per tag
there.

Per destination repository: the tag -> digest map the last run left (what it copied or found
up to date), a checksum of the repository's tag listing as it stood when that run ended, and
when every tag was last compared by a HEAD. A run whose listing of the repository has the
same checksum trusts the map: a tag it records needs only the source's HEAD. A listing that
changed (a tag added or removed behind mirror's back), a record older than
`verify_destination_every` (staggered per repository over its last quarter, so a large estate
is not compared all in one run), or `mirror sync --verify-destination` compares tag by tag
again. What the checksum cannot show is a tag re-pointed at the destination by someone else,
its listing unchanged: that is found at the repository's next full comparison.

Kept per destination registry under `$XDG_STATE_HOME/mirror/sync-destinations/<host>.json`,
merged per repository under a lock (shards running side by side), replaced atomically,
bounded when read. A file that cannot be read counts as empty: every tag is compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.errors import InvalidDigest, MirrorError
from mirror.oci.digest import Digest
from mirror.oci.reference import is_valid_repository, is_valid_tag
from mirror.support.statefile import host_file, read_state, replace_merged

__all__ = ["DAY", "DestinationRecords", "RepositoryRecord", "listing_sum"]

_log = logging.getLogger("mirror.sync")
DAY = 86_400.0
#: the largest record file read (a bigger one is treated as damaged): ~1 M tags
MAX_FILE = 128 * 1024 * 1024
_FORMAT = 1


def listing_sum(tags: Iterable[str]) -> str:
    """The checksum of a tag listing (order does not matter)."""
    digest = hashlib.sha256()
    for tag in sorted(tags):
        digest.update(tag.encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class RepositoryRecord:
    """One destination repository as a run left it."""

    listing: str
    #: when every tag was last compared by a HEAD (Unix time)
    checked: float
    tags: dict[str, str]


def _stagger(repository: str) -> float:
    """A share in [0.75, 1.0) of the verification period, fixed per repository."""
    fraction = int(hashlib.sha256(repository.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return 0.75 + fraction / 4


class DestinationRecords:
    """The records of registry destinations: read on first use, saved once a run ends."""

    def __init__(
        self,
        directory: Path | None,
        *,
        verify_every: float = DAY,
        verify_now: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.verify_every = verify_every
        self.verify_now = verify_now
        self.clock = clock
        self._known: dict[str, dict[str, RepositoryRecord]] = {}
        self._updated: dict[str, dict[str, RepositoryRecord]] = {}

    def _host(self, registry: str) -> dict[str, RepositoryRecord]:
        if registry not in self._known:
            self._known[registry] = self._read(registry) if self.directory else {}
        return self._known[registry]

    def _file(self, registry: str) -> Path:
        assert self.directory is not None
        return host_file(self.directory, registry)

    def _read(self, registry: str) -> dict[str, RepositoryRecord]:
        return read_state(
            self._file(registry),
            MAX_FILE,
            _parse,
            dict,
            what="sync record",
            instead="comparing every tag",
            log=_log,
        )

    def trusted(self, registry: str, repository: str, listing: Iterable[str]) -> RepositoryRecord:
        """The record of a repository when it may stand in for a HEAD per tag: its listing
        is the one recorded and its last full comparison is recent; else an empty record."""
        if self.directory is None or self.verify_now or self.verify_every <= 0:
            return _EMPTY
        record = self._host(registry).get(repository)
        if record is None or record.listing != listing_sum(listing):
            return _EMPTY
        if self.clock() - record.checked >= self.verify_every * _stagger(repository):
            return _EMPTY
        return record

    def record(self, registry: str, repository: str, record: RepositoryRecord) -> None:
        """What a run leaves of a repository (kept when `save` is called)."""
        self._host(registry)[repository] = record
        self._updated.setdefault(registry, {})[repository] = record

    async def save(self) -> None:
        """Merge the records this run made into the files, repository by repository. Records
        are a saving, not a result: when they cannot be written (a read-only or full disk),
        one warning, the files of the hosts touched are taken away where that is possible
        (none may outlive a write it could not record), and no record is used or kept for
        the rest of the run."""
        if self.directory is None or not self._updated:
            return
        try:
            await self._save()
        except (OSError, MirrorError) as exc:
            _log.warning("cannot keep sync records (%s): every tag is compared next run", exc)
            for registry in self._updated:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._file(registry).unlink, True)
            self.directory = None
            self._known.clear()
        self._updated.clear()

    async def _save(self) -> None:
        assert self.directory is not None
        await replace_merged(self.directory, self._updated, self._merged)

    def _merged(self, registry: str) -> bytes:
        """The host's file with this run's records over the repositories they name."""
        return _serialize({**self._read(registry), **self._updated[registry]})


_EMPTY = RepositoryRecord("", 0.0, {})


def _parse(obj: Any) -> dict[str, RepositoryRecord]:
    """The records of a file, every entry checked (ValueError when malformed); an entry that
    is not sane is left out (its repository is compared tag by tag)."""
    if not isinstance(obj, dict) or obj.get("version") != _FORMAT:
        raise ValueError("not a sync destination record")
    repositories = obj.get("repositories")
    if not isinstance(repositories, dict):
        raise ValueError("no repositories table")
    out: dict[str, RepositoryRecord] = {}
    for name, entry in repositories.items():
        if not (isinstance(entry, dict) and is_valid_repository(name)):
            continue
        listing, checked, tags = entry.get("listing"), entry.get("checked"), entry.get("tags")
        if not (
            isinstance(listing, str) and isinstance(checked, int | float) and isinstance(tags, dict)
        ):
            continue
        try:
            kept = {t: str(Digest(d)) for t, d in tags.items() if is_valid_tag(t)}
        except (InvalidDigest, TypeError):
            continue
        out[name] = RepositoryRecord(listing, float(checked), kept)
    return out


def _serialize(records: dict[str, RepositoryRecord]) -> bytes:
    table = {
        name: {"listing": r.listing, "checked": r.checked, "tags": r.tags}
        for name, r in sorted(records.items())
    }
    return json.dumps({"version": _FORMAT, "repositories": table}, separators=(",", ":")).encode()
