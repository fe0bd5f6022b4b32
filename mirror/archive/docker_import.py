"""An image of a `docker save` archive made into a registry image: layers compressed, their
`diff_ids` checked, a manifest written (a docker archive keeps none, so its digest is new).

The image is built in a private temporary OCI layout, which the copy then reads like any
other: each distinct layer member is streamed from the archive once (by its offset in a plain
tar, one per CPU at a time; in one pass over a compressed archive's stream) — decompressed in
bounded reads if it was compressed, hashed (its diff_id, checked against the config's
`rootfs.diff_ids`) and compressed again (gzip, or zstd) into the layout — so memory stays flat
whatever the layer's size. Nothing reaches the destination before every layer has been
checked; a cancelled import stops its conversions at their next chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import os
import tempfile
import threading
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import zstandard

from mirror.archive.docker_tar import DockerArchive, DockerImageEntry, choose
from mirror.errors import LayoutError
from mirror.layout import Layout, index_file
from mirror.limits import DEFAULT_LIMITS
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest, DigestHasher
from mirror.support.tasks import stoppable_in_thread, together

__all__ = ["IMPORTED_NAME", "ImportFormat", "imported_image"]

T = TypeVar("T")

#: the name the chosen image has in the temporary layout
IMPORTED_NAME = "imported"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ImportFormat:
    """How an archived image becomes a registry image: OCI or Docker v2 manifests, gzip or
    zstd layers (zstd means OCI: Docker's media types have no zstd)."""

    oci: bool = False
    zstd: bool = False

    @property
    def manifest_type(self) -> str:
        """The manifest's media type."""
        return mt.OCI_MANIFEST if self.oci or self.zstd else mt.DOCKER_MANIFEST

    @property
    def config_type(self) -> str:
        """The config's media type."""
        return mt.OCI_CONFIG if self.oci or self.zstd else mt.DOCKER_CONFIG

    @property
    def layer_type(self) -> str:
        """Each layer's media type."""
        if self.zstd:
            return mt.OCI_LAYER_ZSTD
        return mt.OCI_LAYER_GZIP if self.oci else mt.DOCKER_LAYER_GZIP


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _decompressed(source: io.BufferedReader[Any]) -> _Reader:
    """The uncompressed bytes of a layer member, whatever it was stored as: every read of
    a gzip or zstd stream gives at most what it asks, however well the stream compresses."""
    magic = source.peek(len(_ZSTD_MAGIC))[: len(_ZSTD_MAGIC)]
    if magic.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=source, mode="rb")
    if magic == _ZSTD_MAGIC:
        unzstd = zstandard.ZstdDecompressor()
        return unzstd.stream_reader(source, read_size=_CHUNK, read_across_frames=True)
    return source


#: what a damaged compressed stream raises
_DECOMPRESSION_ERRORS = (zlib.error, zstandard.ZstdError, gzip.BadGzipFile, EOFError)


def _compressor(zstd: bool) -> Any:
    if zstd:
        return zstandard.ZstdCompressor(level=3).compressobj()
    return zlib.compressobj(6, zlib.DEFLATED, 31)


@dataclass(frozen=True)
class _Converted:
    """A layer member as converted: its uncompressed digest (the diff_id it has), the new
    blob's digest and size."""

    diff_id: str
    digest: Digest
    size: int


def _convert(
    source: io.BufferedReader[Any],
    where: str,
    out: Path,
    zstd: bool,
    max_size: int,
    stop: threading.Event,
) -> _Converted:
    """Stream one layer member into `out` compressed. Memory stays flat: each read gives at
    most `_CHUNK` uncompressed bytes, and a layer over `max_size` uncompressed bytes is
    refused; `stop` set ends it at the next chunk."""
    uncompressed, compressed = hashlib.sha256(), DigestHasher()
    compress = _compressor(zstd)
    try:
        with open(out, "wb") as f:

            def emit(data: bytes) -> None:
                if data:
                    f.write(data)
                    compressed.update(data)

            size = 0
            reader = _decompressed(source)
            while chunk := reader.read(_CHUNK):
                if stop.is_set():
                    raise _Stopped
                size += len(chunk)
                if size > max_size:
                    raise LayoutError(f"{where} is over {max_size} bytes uncompressed")
                uncompressed.update(chunk)
                emit(compress.compress(chunk))
            emit(compress.flush())
            f.flush()
            os.fsync(f.fileno())
    except _DECOMPRESSION_ERRORS as exc:
        raise LayoutError(f"{where}: {exc}") from None
    return _Converted(f"sha256:{uncompressed.hexdigest()}", compressed.digest(), compressed.size)


def _convert_member(
    archive: DockerArchive,
    member: str,
    out: Path,
    zstd: bool,
    max_size: int,
    stop: threading.Event,
) -> _Converted:
    """One layer member of a plain archive, read by its offset, converted into `out`."""
    with archive.open_member(member) as source:
        return _convert(source, _where(archive, member), out, zstd, max_size, stop)


class _Stopped(Exception):
    """A conversion ended because its caller was cancelled."""


def _where(archive: DockerArchive, member: str) -> str:
    return f"docker archive {archive.label}: layer {member[:200]}"


def _check_diff_ids(
    archive: DockerArchive,
    entry: DockerImageEntry,
    diff_ids: list[str],
    members: list[str],
    converted: dict[str, _Converted],
) -> None:
    """Every layer's uncompressed digest is the diff_id the config gives it."""
    for name, member, diff_id in zip(entry.layers, members, diff_ids, strict=True):
        found = converted[member].diff_id
        if found != diff_id:
            raise LayoutError(
                f"docker archive {archive.label}: layer {name[:200]} has diff_id {found}, "
                f"but the image config says {diff_id}"
            )


def _diff_ids(archive: DockerArchive, entry: DockerImageEntry, raw: bytes) -> list[str]:
    """The config's diff_ids (the config checked against the digest its name carries)."""
    named = os.path.basename(entry.config).removesuffix(".json")
    is_hex = len(named) == 64 and all(c in "0123456789abcdef" for c in named)
    if is_hex and hashlib.sha256(raw).hexdigest() != named:
        raise LayoutError(
            f"docker archive {archive.label}: config {entry.config} does not match its name"
        )
    try:
        config = json.loads(raw)
        diff_ids = config["rootfs"]["diff_ids"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise LayoutError(
            f"docker archive {archive.label}: config {entry.config} has no rootfs.diff_ids"
        ) from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise LayoutError(f"docker archive {archive.label}: config {entry.config} is malformed")
    if len(diff_ids) != len(entry.layers):
        raise LayoutError(
            f"docker archive {archive.label}: the config lists {len(diff_ids)} layers, "
            f"manifest.json {len(entry.layers)}"
        )
    for diff_id in diff_ids:
        Digest(diff_id)  # a malformed one is refused here, never used as a name
    return diff_ids


def _place(root: Path, digest: Digest, written: Path | None = None, data: bytes = b"") -> None:
    target = root / "blobs" / digest.algorithm / digest.encoded
    target.parent.mkdir(parents=True, exist_ok=True)
    if written is not None:
        os.replace(written, target)
    else:
        target.write_bytes(data)


async def _build(
    path: Path, wanted: str | None, fmt: ImportFormat, root: Path, max_size: int
) -> None:
    """Write the chosen image as the only image of a new layout at `root`."""
    archive = await asyncio.to_thread(DockerArchive.open, path)
    entry = choose(await asyncio.to_thread(archive.entries), wanted, path)
    _check_room(archive, fmt, len(entry.layers))
    config_member = archive.resolve(entry.config)
    members = [archive.resolve(name) for name in entry.layers]
    if config_member in members:
        raise LayoutError(
            f"docker archive {archive.label}: config {entry.config[:200]} is named as a layer"
        )
    distinct = list(dict.fromkeys(members))
    if archive.compressed:  # one pass over the stream, in the order the archive holds them
        config_raw, converted = await stoppable_in_thread(
            _convert_streamed, archive, config_member, distinct, root, fmt.zstd, max_size
        )
        diff_ids = _diff_ids(archive, entry, config_raw)
    else:  # the config first, then the layers by offset, one per CPU at a time
        config_raw = await asyncio.to_thread(archive.read, config_member)
        diff_ids = _diff_ids(archive, entry, config_raw)
        converted = await _convert_all(archive, distinct, root, fmt.zstd, max_size)
    _check_diff_ids(archive, entry, diff_ids, members, converted)
    config_digest = Digest.of(config_raw)
    _place(root, config_digest, data=config_raw)
    config = {"mediaType": fmt.config_type, "size": len(config_raw), "digest": str(config_digest)}
    layers = [
        {"mediaType": fmt.layer_type, "size": converted[m].size, "digest": str(converted[m].digest)}
        for m in members
    ]
    raw = _manifest(fmt, config, layers)
    _place(root, Digest.of(raw), data=raw)
    index = index_file.empty_index()
    index["manifests"] = [
        {
            "mediaType": fmt.manifest_type,
            "digest": str(Digest.of(raw)),
            "size": len(raw),
            "annotations": {index_file.REF_NAME: IMPORTED_NAME},
        }
    ]
    (root / "oci-layout").write_bytes(index_file.OCI_LAYOUT_BYTES)
    (root / "index.json").write_bytes(index_file.serialize(index))


async def _convert_all(
    archive: DockerArchive, members: list[str], root: Path, zstd: bool, max_size: int
) -> dict[str, _Converted]:
    """Each distinct layer member of a plain archive converted once, one per CPU at a time,
    placed in the layout by its new digest."""
    converted: dict[str, _Converted] = {}
    work = iter(enumerate(members))

    async def worker() -> None:
        for number, member in work:  # shared: each worker takes the next member
            part = root / f"layer-{number}.part"
            done = await stoppable_in_thread(  # the thread ends before its folder goes
                _convert_member, archive, member, part, zstd, max_size
            )
            _place(root, done.digest, written=part)
            converted[member] = done

    await together(worker() for _ in range(min(os.cpu_count() or 2, len(members))))
    return converted


def _convert_streamed(
    archive: DockerArchive,
    config: str,
    members: list[str],
    root: Path,
    zstd: bool,
    max_size: int,
    stop: threading.Event,
) -> tuple[bytes, dict[str, _Converted]]:
    """The config and each distinct layer member of a compressed archive, converted in one
    pass over its stream (blocking); nothing but the converted layers is written."""
    size = archive.small_size(config)
    numbers = {member: number for number, member in enumerate(members)}
    converted: dict[str, _Converted] = {}
    config_raw = None
    for name, source in archive.stream_members({config, *members}):
        if stop.is_set():
            raise _Stopped
        if name == config:
            config_raw = source.read(size)
            continue
        part = root / f"layer-{numbers[name]}.part"
        converted[name] = _convert(source, _where(archive, name), part, zstd, max_size, stop)
        _place(root, converted[name].digest, written=part)
    if config_raw is None or len(converted) != len(members):
        raise LayoutError(f"docker archive {archive.label} changed while it was read")
    return config_raw, converted


def _manifest(fmt: ImportFormat, config: dict[str, Any], layers: list[dict[str, Any]]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": fmt.manifest_type,
        "config": config,
        "layers": layers,
    }
    return json.dumps(manifest, indent=3).encode()


def _check_room(archive: DockerArchive, fmt: ImportFormat, count: int) -> None:
    """Refuse, before any layer is read, an image with more layers than a manifest holds
    (the least each descriptor can take counted: sizes of one digit)."""
    least = {"mediaType": fmt.layer_type, "size": 0, "digest": f"sha256:{'0' * 64}"}
    config = {**least, "mediaType": fmt.config_type}
    if len(_manifest(fmt, config, [least] * count)) > mt.MAX_MANIFEST_SIZE:
        raise LayoutError(
            f"docker archive {archive.label}: the image has {count} layers; its manifest "
            f"would be over the {mt.MAX_MANIFEST_SIZE} byte manifest limit"
        )


@contextlib.asynccontextmanager
async def imported_image(
    path: Path,
    wanted: str | None,
    fmt: ImportFormat = ImportFormat(),
    *,
    max_layer_size: int = DEFAULT_LIMITS.max_blob_size,
) -> AsyncIterator[Layout]:
    """The image `wanted` of the docker archive (NAME:TAG, @N, None for the only one) as the
    image `IMPORTED_NAME` of a temporary layout, removed afterwards; a layer over
    `max_layer_size` bytes uncompressed is refused."""
    with tempfile.TemporaryDirectory(prefix="mirror-docker-archive-") as tmp:
        await _build(path, wanted, fmt, Path(tmp), max_layer_size)
        async with await Layout.open(tmp) as layout:
            yield layout
