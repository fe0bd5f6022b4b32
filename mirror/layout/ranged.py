"""Parallel ranged downloads into a layout, assembled and verified as one blob.

The blob is cut into parts; several are fetched at once (`Range: bytes=S-E`) and written at
their offsets into `.mirror/partial/<alg>-<hex>.ranged`. Parts done are recorded in a
`.ranges` file next to it, so a restarted process fetches only the missing parts. The whole
file is hashed in order while parts arrive (the hashing follows the contiguous prefix), and
nothing is installed unless the digest and size match.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from mirror.endpoint import RangeFetcher, RangeNotHonoured
from mirror.errors import ContentError, LayoutError, SizeMismatch
from mirror.oci.digest import DigestHasher, check_content
from mirror.oci.model import Descriptor
from mirror.retry import RetryPolicy
from mirror.support import jsonutil
from mirror.support.fsutil import read_capped, write_atomic
from mirror.support.tasks import finish_in_thread, gather_all

__all__ = ["fill_ranged"]

_HASH_BLOCK = 4 * 1024 * 1024
_MAX_SIDECAR = 16 * 1024 * 1024
#: the most parts one blob is cut into (parts grow for bigger blobs)
MAX_PARTS = 4096
_log = logging.getLogger("mirror.layout")


def _load_done(path: Path, size: int, part: int) -> set[int]:
    try:
        data = jsonutil.loads(read_capped(path, _MAX_SIDECAR))
    except (OSError, ValueError, LayoutError):
        return set()  # absent, planted or damaged: fetch every part again
    if not isinstance(data, dict) or data.get("size") != size or data.get("part") != part:
        return set()
    return {int(s) for s in data.get("done", []) if isinstance(s, int) and 0 <= s < size}


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _hash_span(fd: int, hasher: DigestHasher, start: int, end: int) -> None:
    position = start
    while position < end:
        block = os.pread(fd, min(_HASH_BLOCK, end - position), position)
        if not block:
            raise SizeMismatch("partial file shorter than the parts written to it")
        hasher.update(block)
        position += len(block)


async def fill_ranged(
    fd: int,
    sidecar: Path,
    tmp_dir: Path,
    desc: Descriptor,
    fetch: RangeFetcher,
    *,
    part_size: int,
    parallel: int,
    retry: RetryPolicy,
) -> None:
    """Fetch the missing parts of the locked ranged partial, verify the whole, fsync it."""
    size = desc.size
    part_size = max(part_size, -(-size // MAX_PARTS))  # never more than MAX_PARTS parts
    done = await asyncio.to_thread(_load_done, sidecar, size, part_size)
    if not done:
        await finish_in_thread(os.ftruncate, fd, 0)
    await finish_in_thread(os.ftruncate, fd, size)
    starts = list(range(0, size, part_size))
    if done:
        _log.info("resuming %s: %d of %d parts already here", desc.digest, len(done), len(starts))
    hasher = DigestHasher(desc.digest.algorithm)
    hashed = 0
    hash_lock = asyncio.Lock()
    record_lock = asyncio.Lock()

    async def advance_hash() -> None:
        nonlocal hashed
        async with hash_lock:
            end = hashed
            while end < size and end in done:
                end = min(end + part_size, size)
            if end > hashed:
                await finish_in_thread(_hash_span, fd, hasher, hashed, end)
                hashed = end

    async def fetch_part(start: int) -> None:
        end = min(start + part_size, size)
        position, attempts = start, retry.attempts()
        while position < end:
            try:
                async for chunk in fetch(position, end):
                    if position + len(chunk) > end:
                        raise SizeMismatch(f"blob {desc.digest}: range {start}-{end} overran")
                    await finish_in_thread(_pwrite_all, fd, chunk, position)
                    position += len(chunk)
                if position < end:
                    raise SizeMismatch(f"blob {desc.digest}: range {start}-{end} ended early")
            except RangeNotHonoured:
                raise
            except Exception as exc:
                if position == end and not isinstance(exc, SizeMismatch):
                    break  # cut after the part's last byte: the whole-blob digest decides
                await attempts.failed(exc)
        async with record_lock:
            done.add(start)
            record = json.dumps({"size": size, "part": part_size, "done": sorted(done)}).encode()
            # the part's bytes reach the disk before the record says they are there
            await finish_in_thread(os.fdatasync, fd)
            await finish_in_thread(write_atomic, sidecar, record, tmp_dir)
        await advance_hash()

    missing = iter([s for s in starts if s not in done])

    async def worker() -> None:
        # `parallel` workers take parts in turn: never more tasks than that, however many parts
        for start in missing:
            await fetch_part(start)

    await advance_hash()
    await gather_all([worker() for _ in range(max(1, parallel))])
    await advance_hash()
    try:
        check_content(hasher, desc.digest, size, "blob")
    except ContentError:
        await finish_in_thread(os.ftruncate, fd, 0)
        await asyncio.to_thread(sidecar.unlink, missing_ok=True)
        raise
    await finish_in_thread(os.fsync, fd)
    await asyncio.to_thread(sidecar.unlink, missing_ok=True)
