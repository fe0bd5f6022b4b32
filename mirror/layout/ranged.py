"""Parallel ranged downloads into a layout, assembled and verified as one blob.

The blob is cut into parts; several are fetched at once (`Range: bytes=S-E`) and written at
their offsets into `.mirror/partial/<alg>-<hex>.ranged`. Parts done are recorded in a
`.ranges` file next to it (the part's bytes synced first, the record replaced atomically), and
how far each part in flight has come in a `.reached` file, every hundredth of the blob across
the parts in flight (written in place, not synced: it outlives a killed process, not always a
power cut), so a restarted process fetches only what is missing and re-fetches at most about
1 % of the blob. The whole file is
hashed in order while parts arrive (the hashing follows the contiguous prefix), and nothing
is installed unless the digest and size match: when a resumed blob does not, it is fetched
once more from nothing (a checkpoint may have outrun the bytes a power cut kept).
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
from mirror.support.fsutil import read_capped, rewrite_in_place, write_atomic
from mirror.support.tasks import finish_in_thread, gather_all

__all__ = ["fill_ranged"]

_HASH_BLOCK = 4 * 1024 * 1024
_MAX_SIDECAR = 16 * 1024 * 1024
#: the most parts one blob is cut into (parts grow for bigger blobs)
MAX_PARTS = 4096
_log = logging.getLogger("mirror.layout")


#: the bytes of all parts in flight between two checkpoints of their progress, as a share of
#: the blob: what a killed process fetches again at most
CHECKPOINTS_PER_BLOB = 100
#: the least a part moves between two checkpoints of its progress
MIN_CHECKPOINT = 256 * 1024


def progress_path(sidecar: Path) -> Path:
    """Where how far the parts in flight came is kept, beside the record of parts done."""
    return sidecar.with_suffix(".reached")


def _load_json(path: Path, size: int, part: int) -> dict[str, object]:
    """A record of this blob cut into these parts; empty when absent, planted or damaged."""
    try:
        data = jsonutil.loads(read_capped(path, _MAX_SIDECAR))
    except (OSError, ValueError, LayoutError):
        return {}
    if not isinstance(data, dict) or data.get("size") != size or data.get("part") != part:
        return {}
    return data


def _load_record(sidecar: Path, size: int, part: int) -> tuple[set[int], dict[int, int]]:
    """The parts done and how far each other part came, as the two records say."""
    found = _load_json(sidecar, size, part).get("done")
    done = {s for s in (found if isinstance(found, list) else []) if isinstance(s, int)}
    done = {s for s in done if 0 <= s < size and s % part == 0}
    reached: dict[int, int] = {}
    at = _load_json(progress_path(sidecar), size, part).get("at")
    for key, position in at.items() if isinstance(at, dict) else ():
        start = int(key) if isinstance(key, str) and key.isdigit() else -1
        in_part = isinstance(position, int) and start < position < min(start + part, size)
        if start >= 0 and start % part == 0 and start not in done and in_part:
            reached[start] = position
    return done, reached


def _forget(sidecar: Path) -> None:
    """Drop both records."""
    sidecar.unlink(missing_ok=True)
    progress_path(sidecar).unlink(missing_ok=True)


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
    part_size = max(part_size, -(-desc.size // MAX_PARTS))  # never more than MAX_PARTS parts
    done, reached = await asyncio.to_thread(_load_record, sidecar, desc.size, part_size)
    resumed = bool(done or reached)
    while True:
        try:
            await _fill(
                fd, sidecar, tmp_dir, desc, fetch, (done, reached), part_size, parallel, retry
            )
            break
        except RangeNotHonoured:
            await asyncio.to_thread(_forget, sidecar)
            raise
        except ContentError:
            await finish_in_thread(os.ftruncate, fd, 0)
            await asyncio.to_thread(_forget, sidecar)
            if not resumed:
                raise
            _log.info("resumed %s did not verify: fetching it whole", desc.digest)
            done, reached, resumed = set(), {}, False
    await finish_in_thread(os.fsync, fd)
    await asyncio.to_thread(_forget, sidecar)


async def _fill(
    fd: int,
    sidecar: Path,
    tmp_dir: Path,
    desc: Descriptor,
    fetch: RangeFetcher,
    record: tuple[set[int], dict[int, int]],
    part_size: int,
    parallel: int,
    retry: RetryPolicy,
) -> None:
    """One pass of `fill_ranged` from what `record` says is here (parts done, how far each
    part in flight came); raises ContentError when the whole does not verify."""
    size = desc.size
    done, reached = record
    if not done and not reached:
        await finish_in_thread(os.ftruncate, fd, 0)
    await finish_in_thread(os.ftruncate, fd, size)
    starts = list(range(0, size, part_size))
    if done or reached:
        _log.info("resuming %s: %d of %d parts already here", desc.digest, len(done), len(starts))
    workers = max(1, parallel)
    checkpoint = max(MIN_CHECKPOINT, size // (CHECKPOINTS_PER_BLOB * workers))
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

    progress = progress_path(sidecar)

    async def record_progress() -> None:
        at = {str(start): position for start, position in sorted(reached.items())}
        data = json.dumps({"size": size, "part": part_size, "at": at}).encode()
        await finish_in_thread(rewrite_in_place, progress, data)

    async def record_done() -> None:
        data = json.dumps({"size": size, "part": part_size, "done": sorted(done)}).encode()
        # the part's bytes reach the disk before the record says they are there
        await finish_in_thread(os.fdatasync, fd)
        await finish_in_thread(write_atomic, sidecar, data, tmp_dir)

    async def fetch_part(start: int) -> None:
        end = min(start + part_size, size)
        position, attempts = reached.get(start, start), retry.attempts()
        recorded = position
        while position < end:
            try:
                async for chunk in fetch(position, end):
                    if position + len(chunk) > end:
                        raise SizeMismatch(f"blob {desc.digest}: range {start}-{end} overran")
                    await finish_in_thread(_pwrite_all, fd, chunk, position)
                    position += len(chunk)
                    if position - recorded >= checkpoint and position < end:
                        async with record_lock:
                            reached[start] = recorded = position
                            await record_progress()
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
            reached.pop(start, None)
            await record_done()
        await advance_hash()

    missing = iter([s for s in starts if s not in done])

    async def worker() -> None:
        # `parallel` workers take parts in turn: never more tasks than that, however many parts
        for start in missing:
            await fetch_part(start)

    await advance_hash()
    await gather_all([worker() for _ in range(workers)])
    await advance_hash()
    check_content(hasher, desc.digest, size, "blob")
