"""Taking away a layout that a failed write made and left with nothing worth keeping.

A copy into a new layout that fails leaves nothing behind unless the next run can use what it
stored: an image named in `index.json`, a large blob (one that is resumable: over
`SMALL_BLOB`) whole or partly written. Small blobs and emptied partial files are not worth a
directory of their own. The layout is taken away under both of its locks, taken without
waiting (a writer that holds one keeps it all); the marker goes first, so that an interrupted
removal leaves a directory `Layout.open(create=True)` makes a layout of again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from mirror.errors import LayoutError
from mirror.layout import index_file
from mirror.support.fsutil import read_capped, try_locked

__all__ = ["discard_unused"]

_log = logging.getLogger("mirror.layout")
#: what a layout directory mirror made holds
_OURS = {".mirror", "blobs", "index.json", "oci-layout"}


@contextlib.contextmanager
def _locked(*paths: Path) -> Iterator[bool]:
    """Hold exclusive locks on every file of `paths` if none is held elsewhere now."""
    held: list[int] = []
    try:
        for path in paths:
            fd = try_locked(path)
            if fd is None:
                yield False
                return
            held.append(fd)
        yield True
    finally:
        for fd in held:
            os.close(fd)


def _files(folder: Path) -> list[os.stat_result] | None:
    """The status of each entry of `folder` (not followed); None when one is not a regular
    file (nothing of ours is anything else)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    found = [e.stat(follow_symlinks=False) for e in entries]
    return found if all(stat.S_ISREG(s.st_mode) for s in found) else None


def _is_real_dir(path: Path) -> bool:
    """True for a directory that is not a link."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _folders(path: Path) -> list[Path] | None:
    """The folders of `blobs/` and `.mirror/` (not followed: a link, or a folder holding
    anything but regular files, makes the layout not one of ours to take away: None)."""
    out = []
    for top in (path / "blobs", path / ".mirror"):
        if os.path.lexists(top) and not _is_real_dir(top):
            return None
        for entry in os.scandir(top) if _is_real_dir(top) else []:
            if entry.is_dir(follow_symlinks=False):
                out.append(Path(entry.path))
            elif not entry.is_file(follow_symlinks=False):
                return None
    return out


def _unused(path: Path, small: int, max_index: int) -> bool:
    """True when the layout holds only what mirror writes, names no image, keeps no large
    blob and no partial blob with bytes in it."""
    if {p.name for p in path.iterdir()} - _OURS:
        return False
    try:
        raw = read_capped(path / "index.json", max_index)
        if index_file.parse_index(raw, "index.json")["manifests"]:
            return False
    except FileNotFoundError:
        pass
    except (OSError, LayoutError):
        return False
    folders = _folders(path)
    if folders is None:
        return False
    for folder in folders:
        files = _files(folder)
        if files is None or any(s.st_size > small for s in files):
            return False
        if folder.name == "partial" and any(s.st_size for s in files):
            return False
    return True


def _remove_all(path: Path) -> None:
    """Remove what mirror wrote of the layout (checked by `_unused`), marker first."""
    for name in ("oci-layout", "index.json"):
        (path / name).unlink(missing_ok=True)
    for folder in _folders(path) or []:
        for entry in os.scandir(folder):
            os.unlink(entry.path)
        os.rmdir(folder)
    for top in (path / "blobs", path / ".mirror"):
        if _is_real_dir(top):
            for entry in os.scandir(top):
                os.unlink(entry.path)
            os.rmdir(top)


def discard_unused(path: Path, made: list[Path], small: int, max_index: int) -> bool:
    """Remove the layout at `path` when nothing in it is worth keeping (`_unused`) and no one
    holds its locks, and then the folders of `made` (`path` and the parents made for it,
    deepest first) that are empty; True when the layout was removed."""
    state = path / ".mirror"
    try:
        with _locked(state / "writers.lock", state / "index.lock") as held:
            if not held or not _unused(path, small, max_index):
                return False
            _remove_all(path)
    except (OSError, LayoutError) as exc:  # never in the way of the failure being reported
        _log.info("left the unused layout %s (%s)", path, exc)
        return False
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            break
    return True
