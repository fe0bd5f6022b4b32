"""Writing a layout directory as one archive (plain tar or zstd) atomically: the bundle record
first, then `oci-layout`, `index.json` and the blobs; temporary file, fsync, rename.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import IO, Any

import zstandard

from mirror.archive.tarfiles import RECORD
from mirror.support.fsutil import fsync_dir, temp_name

__all__ = ["pack_layout"]


def pack_layout(
    layout_dir: Path,
    out: Path,
    *,
    compress: bool,
    record: dict[str, Any] | None = None,
    leave_out: frozenset[str] = frozenset(),
    only: frozenset[str] | None = None,
    index: bytes | None = None,
) -> None:
    """Write the layout at `layout_dir` as a tar (zstd when `compress`) to `out` atomically.

    `record` is written first as `mirror-bundle.json`; blobs whose digests are in
    `leave_out` are not included (delta bundles), nor, when `only` is given, blobs it does not
    name (a part of a split bundle, whose own `index.json` is `index`).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / temp_name(f".{out.name}")
    try:
        with open(tmp, "wb") as raw:
            sink: IO[bytes] = raw
            compressor = None
            if compress:
                compressor = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(
                    raw, closefd=False
                )
                sink = compressor
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if record is not None:
                    _add_bytes(tar, RECORD, json.dumps(record, indent=1).encode())
                _add_file(tar, layout_dir / "oci-layout", "oci-layout")
                if index is None:
                    _add_file(tar, layout_dir / "index.json", "index.json")
                else:
                    _add_bytes(tar, "index.json", index)
                for alg_dir in sorted((layout_dir / "blobs").iterdir()):
                    for blob in sorted(alg_dir.iterdir()):
                        digest = f"{alg_dir.name}:{blob.name}"
                        if digest in leave_out or (only is not None and digest not in only):
                            continue
                        _add_file(tar, blob, f"blobs/{alg_dir.name}/{blob.name}")
            if compressor is not None:
                compressor.flush(zstandard.FLUSH_FRAME)
                compressor.close()  # type: ignore[no-untyped-call]
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> None:
    with open(path, "rb") as f:
        tar.addfile(_info(name, os.fstat(f.fileno()).st_size), f)
