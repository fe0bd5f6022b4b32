"""`docker save` archives read with bounds: the member index, `manifest.json`, the image chosen.

A docker archive is a plain tar whose `manifest.json` lists images as
`{"Config": PATH, "RepoTags": [NAME:TAG…], "Layers": [PATH…]}`. Paths are `<id>/layer.tar`
and `<hex>.json` (docker before 25, skopeo), or `blobs/sha256/<hex>` beside an OCI
`index.json` (docker 25 and later); both are read through `manifest.json` alike. Members are
indexed by their headers only; a symbolic link (docker writes one for a layer an earlier
image already holds) is followed only to a regular member inside the archive; a name that
leaves the archive (absolute, `..`), a hard link, a device or a sparse member is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterator, Set
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from mirror.archive.tarfiles import (
    MemberCount,
    SafeTarInfo,
    copies_differ,
    headers,
    is_compressed,
    open_stream,
    same_bytes,
)
from mirror.errors import InvalidReference, LayoutError
from mirror.oci.reference import parse_registry_reference

__all__ = ["MAX_CONFIG_SIZE", "DockerArchive", "DockerImageEntry", "choose"]

#: the largest `manifest.json` or image config read from a docker archive
MAX_CONFIG_SIZE = 4 * 1024 * 1024
#: symbolic links followed one after another before the member is refused
_MAX_LINK_HOPS = 8
_CHUNK = 1024 * 1024
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DockerImageEntry:
    """One image of `manifest.json`: its config member, tags and layer members (in order)."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


class DockerArchive:
    """A `docker save` tar indexed by member name (offsets and sizes, no data read).

    A plain tar is read by offsets. A compressed one (`docker save | gzip`, zstd) is read as a
    stream, never inflated onto the disk: indexing streams through it once (keeping
    `manifest.json`), and `stream_members` streams through it again for the members wanted.
    """

    def __init__(self, path: Path, label: Path | None = None) -> None:
        self.path = path
        #: the file errors name
        self.label = label or path
        #: gzip or zstd: members are read in one pass over the stream, not by offset
        self.compressed = False
        self._regular: dict[str, tuple[int, int]] = {}
        self._links: dict[str, str] = {}
        self._kept: dict[str, bytes] = {}
        #: later copies of a regular member (name, offset): the first is the one read, and
        #: each must hold the same bytes
        self._repeats: list[tuple[str, int]] = []

    @classmethod
    def open(cls, path: Path, label: Path | None = None) -> DockerArchive:
        """Index the archive (blocking: run in a thread); LayoutError when it is damaged."""
        archive = cls(path, label)
        try:
            archive.compressed = is_compressed(path)
        except OSError as exc:
            raise LayoutError(
                f"cannot open docker archive {archive.label}: {exc.strerror}"
            ) from None
        if archive.compressed:
            archive._index_stream()
        else:
            archive._index_file()
        return archive

    def _index_file(self) -> None:
        try:
            with tarfile.open(self.path, "r:", tarinfo=SafeTarInfo) as tar:
                count = MemberCount(f"docker archive {self.label}")
                for member in headers(tar):
                    self._add(member, count)
        except OSError as exc:
            raise LayoutError(f"cannot open docker archive {self.label}: {exc.strerror}") from None
        except (tarfile.TarError, EOFError) as exc:
            raise LayoutError(
                f"docker archive {self.label} is truncated or not a tar: {exc}"
            ) from None
        end = os.path.getsize(self.path)
        for name, (offset, size) in self._regular.items():
            if offset + size > end:
                raise LayoutError(f"docker archive {self.label} is truncated: {name} is cut short")
        for name, offset in self._repeats:
            first, size = self._regular[name]
            with open(self.path, "rb") as a, open(self.path, "rb") as b:
                a.seek(first)
                b.seek(offset)
                if not same_bytes(a, b, size):
                    raise copies_differ(f"docker archive {self.label}", name)

    def _index_stream(self) -> None:
        with open_stream(self.path) as tar:
            count = MemberCount(f"docker archive {self.label}")
            for member in headers(tar):
                self._add(member, count)
                name = member.name.removeprefix("./")
                if name == _MANIFEST and member.isfile() and member.size <= MAX_CONFIG_SIZE:
                    data = tar.extractfile(member)
                    self._kept[_MANIFEST] = data.read(member.size) if data is not None else b""

    def _add(self, member: tarfile.TarInfo, count: MemberCount) -> None:
        name = _clean(member.name, self.label)
        if member.isdir():
            count.skip()
            return
        count.index()
        again = name in self._regular or name in self._links
        if again and name == _MANIFEST:
            raise LayoutError(f"docker archive {self.label} holds {_MANIFEST} twice; refused")
        if member.issym():
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            target = _clean(joined, self.label)
            if again and self._links.get(name) != target:
                raise copies_differ(f"docker archive {self.label}", name)
            self._links[name] = target
            return
        if not member.isfile() or member.issparse():
            raise LayoutError(
                f"docker archive {self.label}: member {name[:200]!r} is not a regular file"
            )
        if not again:
            self._regular[name] = (member.offset_data, member.size)
        elif self._regular.get(name, (0, -1))[1] == member.size:
            self._repeats.append((name, member.offset_data))  # its bytes compared when read
        else:
            raise copies_differ(f"docker archive {self.label}", name)

    def resolve(self, name: str) -> str:
        """The regular member a name in `manifest.json` stands for (links followed inside)."""
        clean = _clean(name, self.label)
        for _ in range(_MAX_LINK_HOPS):
            if clean in self._regular:
                return clean
            if clean not in self._links:
                raise LayoutError(f"docker archive {self.label} has no member {name[:200]!r}")
            clean = self._links[clean]
        raise LayoutError(f"docker archive {self.label}: member {name[:200]!r} links in a loop")

    def member(self, name: str) -> tuple[int, int]:
        """The offset and size of a member named by `manifest.json` (links followed inside)."""
        return self._regular[self.resolve(name)]

    def small_size(self, name: str, limit: int = MAX_CONFIG_SIZE) -> int:
        """The size of a member read whole (`manifest.json`, a config); refused over `limit`."""
        _, size = self.member(name)
        if size > limit:
            raise LayoutError(
                f"docker archive {self.label}: {name[:200]} is {size} bytes, over {limit}"
            )
        return size

    def read(self, name: str, limit: int = MAX_CONFIG_SIZE) -> bytes:
        """A small member's bytes (`manifest.json`, a config), refused over `limit`."""
        size = self.small_size(name, limit)
        offset, _ = self.member(name)
        resolved = self.resolve(name)
        if resolved in self._kept:
            return self._kept[resolved]
        if self.compressed:
            for _, source in self.stream_members({resolved}):
                return source.read(size)
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def stream_members(self, names: Set[str]) -> Iterator[tuple[str, io.BufferedReader[Any]]]:
        """One pass over the archive (blocking): each regular member of `names` (as `resolve`
        gives them) with its bytes, in the order the archive holds them; each is read before
        the next is given. A later copy of one must hold the same bytes (hashed to compare)."""
        repeated = {name for name, _ in self._repeats} & names
        firsts: dict[str, bytes] = {}
        with open_stream(self.path) as tar:
            for member in headers(tar):  # as many as indexing counted, or refused there
                name = member.name.removeprefix("./")
                source = tar.extractfile(member) if name in names and member.isfile() else None
                if source is None:
                    continue
                first = self._regular.get(name) == (member.offset_data, member.size)
                if name not in repeated:
                    if first:  # tarfile's ExFileObject: buffered
                        yield name, cast("io.BufferedReader[Any]", source)
                elif first:
                    hashed = _Hashed(source)
                    yield name, io.BufferedReader(hashed, _CHUNK)
                    firsts[name] = hashed.finish()
                elif _Hashed(source).finish() != firsts.get(name):
                    raise copies_differ(f"docker archive {self.label}", name)

    def open_member(self, name: str) -> io.BufferedReader[Any]:
        """A member's bytes as a file (blocking reads), exactly its size (a plain archive)."""
        offset, size = self.member(name)
        where = f"docker archive {self.label} is truncated inside {name[:200]}"
        raw = open(self.path, "rb", buffering=0)  # noqa: SIM115 - the span closes it
        return io.BufferedReader(_Span(raw, offset, size, where), _CHUNK)

    def entries(self) -> list[DockerImageEntry]:
        """The images `manifest.json` lists; LayoutError when it is missing or malformed."""
        try:
            data = json.loads(self.read("manifest.json"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LayoutError(f"docker archive {self.label}: manifest.json is not JSON") from None
        if not isinstance(data, list) or not data:
            raise LayoutError(f"docker archive {self.label}: manifest.json lists no image")
        return [_entry(item, self.label) for item in data]


class _Hashed(io.RawIOBase):
    """A member's bytes as they are read, hashed on the way (to compare two copies)."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source, self._hash = source, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(memoryview(buffer).cast("B")))
        self._hash.update(data)
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def finish(self) -> bytes:
        """The digest of all the member's bytes (what was not read yet is read now)."""
        while chunk := self._source.read(_CHUNK):
            self._hash.update(chunk)
        return self._hash.digest()


class _Span(io.RawIOBase):
    """`size` bytes of a file from `offset`; LayoutError `truncated` when the file ends first."""

    def __init__(self, file: io.FileIO, offset: int, size: int, truncated: str) -> None:
        self._file, self._left, self._truncated = file, size, truncated
        file.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._left:
            return 0
        view = memoryview(buffer).cast("B")[: self._left]
        count = self._file.readinto(view)
        if not count:
            raise LayoutError(self._truncated)
        self._left -= count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def _clean(name: str, path: Path) -> str:
    clean = name.removeprefix("./")
    if clean.startswith("/") or ".." in clean.split("/") or not clean:
        raise LayoutError(f"docker archive {path}: member {name[:200]!r} points outside it")
    return clean


def _entry(item: Any, path: Path) -> DockerImageEntry:
    def strings(value: Any) -> tuple[str, ...] | None:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return None

    if not isinstance(item, dict):
        raise LayoutError(f"docker archive {path}: manifest.json has an entry that is no object")
    config, layers = item.get("Config"), strings(item.get("Layers"))
    tags = strings(item.get("RepoTags") or [])
    if not isinstance(config, str) or layers is None or tags is None:
        raise LayoutError(
            f"docker archive {path}: manifest.json entry needs Config, Layers and RepoTags"
        )
    if item.get("LayerSources"):
        raise LayoutError(f"docker archive {path}: foreign layers (LayerSources) are unsupported")
    return DockerImageEntry(config, tags, layers)


def _normal(name: str) -> str:
    try:
        return str(parse_registry_reference(name))
    except InvalidReference:
        return name


def choose(entries: list[DockerImageEntry], wanted: str | None, path: Path) -> DockerImageEntry:
    """The image `wanted` names: `NAME:TAG` among the RepoTags (Docker Hub names normalised),
    `@N` by position, or None for the only one."""
    if wanted is None:
        if len(entries) == 1:
            return entries[0]
        names = ", ".join(t for e in entries for t in e.repo_tags[:1]) or "untagged images"
        raise InvalidReference(
            f"docker archive {path} holds {len(entries)} images ({names}): "
            f"choose one with docker-archive:{path}:NAME:TAG or docker-archive:{path}:@N"
        )
    if wanted.startswith("@"):
        index = wanted[1:]
        if not index.isdigit() or int(index) >= len(entries):
            raise InvalidReference(
                f"docker archive {path} has no image {wanted} (it holds {len(entries)})"
            )
        return entries[int(index)]
    target = _normal(wanted)
    for entry in entries:
        if any(_normal(tag) == target for tag in entry.repo_tags):
            return entry
    raise InvalidReference(f"docker archive {path} has no image tagged {wanted}")
