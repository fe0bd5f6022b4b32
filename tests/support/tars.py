"""Tar archives built byte by byte for hostile-input tests: headers, members streamed from
generators (so a test never holds a large member), floods of empty members, docker archives."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import zstandard

MIB = 1024**2
GIB = 1024**3
_ZEROS = bytes(MIB)

#: a member: its header, its data in chunks, its size
Member = tuple[bytes, Iterable[bytes], int]


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """A ustar header for `name`."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, kind
    return info.tobuf(tarfile.USTAR_FORMAT)


def symlink(name: str, target: str) -> Member:
    """A symbolic link member."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 0
    return info.tobuf(tarfile.USTAR_FORMAT), [], 0


def member(name: str, data: bytes) -> Member:
    """A regular member holding `data`."""
    return header(name, len(data)), [data], len(data)


def pax(key: str, value: bytes, kind: bytes = tarfile.XHDTYPE) -> Member:
    """A pax extended header member (local, or global with `tarfile.XGLTYPE`) of one record."""
    body = key.encode() + b"=" + value + b"\n"
    length = len(body) + 2
    while len(str(length)) + 1 + len(body) != length:
        length += 1
    record = str(length).encode() + b" " + body
    return header("././@PaxHeader", len(record), kind), [record], len(record)


def zeros(size: int) -> Iterator[bytes]:
    """`size` zero bytes in chunks of at most 1 MiB."""
    while size > 0:
        yield _ZEROS[: min(MIB, size)]
        size -= MIB


def empty_members(names: Iterable[str]) -> Iterator[Member]:
    """Empty regular members, headers made fast (a template with its name and checksum
    changed: tarfile takes 40 µs a header, too slow for a million)."""
    template = bytearray(header("x", 0))
    template[0:100] = bytes(100)
    template[148:156] = b" " * 8
    base = sum(template)
    for name in names:
        raw = name.encode()
        block = bytearray(template)
        block[0 : len(raw)] = raw
        block[148:156] = b"%06o\0 " % (base + sum(raw))
        yield bytes(block), (), 0


def write(path: Path, members: Iterable[Member]) -> None:
    """A tar of `members`, zstd-compressed for `.zst` names, gzip-compressed for `.gz`."""
    with open(path, "wb") as raw:
        sink: IO[bytes] | gzip.GzipFile = raw
        writer: zstandard.ZstdCompressionWriter | gzip.GzipFile | None = None
        if path.suffix == ".zst":
            writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
            sink = writer
        elif path.suffix == ".gz":
            writer = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
            sink = writer
        for head, chunks, size in members:
            sink.write(head)
            for chunk in chunks:
                sink.write(chunk)
            sink.write(bytes(-size % tarfile.BLOCKSIZE))
        sink.write(bytes(2 * tarfile.BLOCKSIZE))
        if isinstance(writer, zstandard.ZstdCompressionWriter):
            writer.flush(zstandard.FLUSH_FRAME)
            writer.close()  # type: ignore[no-untyped-call]
        elif writer is not None:
            writer.close()


def zstd_of(chunks: Iterable[bytes]) -> bytes:
    """The zstd frame of the chunks (runs of zeros become tiny RLE blocks)."""
    compress = zstandard.ZstdCompressor(level=1).compressobj()
    out = [compress.compress(chunk) for chunk in chunks]
    return b"".join(out) + compress.flush()


def gzip_of(chunks: Iterable[bytes]) -> bytes:
    """The gzip stream of the chunks."""
    compress = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [compress.compress(chunk) for chunk in chunks]
    return b"".join(out) + compress.flush()


def sha256_of(chunks: Iterable[bytes]) -> str:
    """The sha256 digest of the chunks."""
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def docker_config(diff_ids: list[str]) -> bytes:
    """An image config as `docker save` writes it, with these layer diff_ids."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(config).encode()


def docker_members(
    config: bytes, layers: list[str], tag: str = "hostile/app:1"
) -> tuple[Member, Member]:
    """`manifest.json` naming `layers` and the config (stored by its digest), as members."""
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    entry = [{"Config": config_name, "RepoTags": [tag], "Layers": layers}]
    return member("manifest.json", json.dumps(entry).encode()), member(config_name, config)
