"""Upload sessions saved on disk, so a restarted push continues the same registry upload."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from mirror.errors import LayoutError
from mirror.support.fsutil import read_capped, rewrite_in_place

__all__ = ["MAX_SESSION_FILE", "UploadSession", "UploadSessions"]

#: the most a session file may hold (a Location and an offset take well under 4 KiB)
MAX_SESSION_FILE = 64 * 1024


@dataclass
class UploadSession:
    """Where an upload stands: its current Location and the bytes the registry has."""

    registry: str
    repository: str
    digest: str
    location: str
    offset: int
    #: the least PATCH the registry takes (`OCI-Chunk-Min-Length` when the upload started)
    min_chunk: int = 0


class UploadSessions:
    """One small JSON file per (registry, repository, digest), mode 0600, replaced atomically.

    Locations can carry opaque state tokens, so the files are private to the user.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, registry: str, repository: str, digest: str) -> Path:
        key = hashlib.sha256(f"{registry}\0{repository}\0{digest}".encode()).hexdigest()
        return self.directory / f"{key}.json"

    def load(self, registry: str, repository: str, digest: str) -> UploadSession | None:
        """The saved session, or None (also for an unreadable file, which is then dropped)."""
        path = self._path(registry, repository, digest)
        try:  # opened as a layout file is: no link followed, nothing but a small regular file
            data = json.loads(read_capped(path, MAX_SESSION_FILE))
            return UploadSession(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, LayoutError):
            path.unlink(missing_ok=True)
            return None

    def save(self, session: UploadSession) -> None:
        """Write the session (creating the directory, private to the user) in place, not
        synced: it is saved after every chunk, and one a power cut loses or damages only
        means a fresh upload (`load` drops a damaged one)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(session.registry, session.repository, session.digest)
        old = os.umask(0o077)
        try:
            rewrite_in_place(path, json.dumps(asdict(session)).encode(), mode=0o600)
        finally:
            os.umask(old)

    def drop(self, registry: str, repository: str, digest: str) -> None:
        """Forget a finished or abandoned session."""
        self._path(registry, repository, digest).unlink(missing_ok=True)
