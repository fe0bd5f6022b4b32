"""What `mirror serve` serves: each SOURCE opened as a read-only store (a layout directory,
or a plain `.tar` archive or bundle read in place; the parts of a split bundle, in any order,
read together as one), with the repository and tag each of its images is served under."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from mirror.archive.reader import ArchiveReader
from mirror.errors import InvalidReference, LayoutError
from mirror.layout.reading import LayoutReader
from mirror.layout.store import Layout
from mirror.oci.attached import is_attached_tag
from mirror.oci.model import Descriptor
from mirror.oci.reference import is_valid_repository, is_valid_tag, parse_registry_reference

__all__ = ["FULL_NAME", "Named", "Source", "name_of", "open_source", "open_sources"]

_log = logging.getLogger("mirror.serve")

#: the annotation a bundle names its images by (`host/repository:tag`)
FULL_NAME = "io.containerd.image.name"

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Named:
    """An image of a source as it is served: repository and tag; a repository of None is a
    bundle's attached tag (`sha256-<hex>[.sig]`) that goes where its subject is, and a tag
    of None an image served by digest only."""

    repository: str | None
    tag: str | None
    descriptor: Descriptor


def name_of(desc: Descriptor, repository: str | None) -> tuple[str | None, str | None]:
    """The repository and tag an index entry is served under: a bundle's full name with its
    host dropped (as `bundle push` names it), a `repo:tag` name, a plain tag under
    `repository`, an attached tag with no repository yet, or neither (digest only)."""
    full = desc.annotations.get(FULL_NAME)
    if full:
        try:
            ref = parse_registry_reference(full)
        except InvalidReference:
            pass
        else:
            return ref.repository, ref.tag
    name = desc.ref_name
    if name is None:
        return None, None
    if ":" in name:
        repo, _, tag = name.rpartition(":")
        if is_valid_repository(repo) and is_valid_tag(tag):
            return repo, tag
        return None, None
    if repository is not None and is_valid_tag(name):
        return repository, name
    if is_attached_tag(name):
        return None, name
    return None, None


@dataclass
class Source:
    """One served store and how its images are named; a layout's `index.json` is read again
    whenever it changes on disk (a sync may be writing it)."""

    reader: LayoutReader
    repository: str | None
    #: the file whose change means the names changed (a layout's index.json)
    watched: Path | None = None
    _key: tuple[int, int, int] | None = field(default=None, repr=False)
    _named: list[Named] = field(default_factory=list, repr=False)
    generation: int = 0

    async def named(self) -> list[Named]:
        """Every image of this source with its served name (re-read when changed)."""
        key = _stat_key(self.watched) if self.watched is not None else (0, 0, 0)
        if key != self._key:
            images = await self.reader.images()
            named = [
                Named(*name_of(image.descriptor, self.repository), image.descriptor)
                for image in images
            ]
            self._named, self._key = named, key
            self.generation += 1
        return self._named


def _stat_key(path: Path) -> tuple[int, int, int]:
    """What tells a replaced or rewritten file (inode, change time, size)."""
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


async def open_source(text: str, repository: str | None) -> Source:
    """Open `oci:DIR`, `oci-archive:FILE` or a bundle file (a plain `.tar`) for serving."""
    if text.startswith("oci:"):
        return await _layout(Path(text[len("oci:") :]), repository)
    path = Path(text.removeprefix("oci-archive:"))
    if not text.startswith("oci-archive:") and await asyncio.to_thread(path.is_dir):
        return await _layout(path, repository)
    await asyncio.to_thread(_check_plain_tar, path)
    return Source(await ArchiveReader.open(path), repository)


async def _layout(path: Path, repository: str | None) -> Source:
    layout = await Layout.open(path)
    return Source(layout, repository, path / "index.json")


def _check_plain_tar(path: Path) -> None:
    """Refuse a compressed archive in one line: it cannot be read by seeking."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise LayoutError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise LayoutError(f"{path} is a directory: serve it as oci:{path}") from None
    if magic.startswith(_ZSTD_MAGIC) or magic.startswith(_GZIP_MAGIC):
        raise LayoutError(
            f"{path} is compressed and cannot be served in place: decompress it once "
            f"(zstd -d / gunzip) and serve the .tar"
        )


async def open_sources(texts: list[str], repository: str | None) -> list[Source]:
    """Every source opened, in the order given (the first one holding a name serves it); the
    parts of a split bundle among them, given in any order, are served together after the
    others, one source per set (a split bundle and a split delta on it side by side): the
    images the parts given hold complete, a missing part named in one warning."""
    sets = await asyncio.gather(*(asyncio.to_thread(_part_set, t) for t in texts))
    plain = [t for t, set_id in zip(texts, sets, strict=True) if set_id is None]
    parts: dict[str, list[Path]] = {}
    for text, set_id in zip(texts, sets, strict=True):
        if set_id is not None:
            parts.setdefault(set_id, []).append(Path(text.removeprefix("oci-archive:")))
    sources = list(await asyncio.gather(*(open_source(t, repository) for t in plain)))
    for paths in parts.values():
        sources.append(await _parts_source(paths, repository))
    return sources


def _part_set(text: str) -> str | None:
    """The set a SOURCE is a part of (a plain file whose record says so), or None."""
    from mirror.archive.parts import part_info
    from mirror.archive.unpack import read_record

    path = Path(text.removeprefix("oci-archive:"))
    if text.startswith("oci:") or not path.is_file():
        return None
    try:
        record = read_record(path)
    except (LayoutError, OSError):
        return None  # opening it as an archive says what is wrong with it
    info = part_info(record, path)  # a part whose record was altered: LayoutError naming it
    return info.set_id if info is not None else None


async def _parts_source(paths: list[Path], repository: str | None) -> Source:
    """The parts of one set given, read together (each part once)."""
    from mirror.archive.parts import open_parts

    part_set = await open_parts(paths)
    missing = part_set.missing_line()
    if missing:
        _log.warning("%s: serving the images the parts given hold", missing)
    return Source(await part_set.reader(), repository)
