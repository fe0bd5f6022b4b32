"""Resumable blob downloads into a layout: a partial file per digest, re-verified on resume.

`.mirror/partial/<alg>-<hex>` holds the bytes received so far, written in batches of at most a
hundredth of the blob (so a killed process loses little of it). A writer takes an exclusive
flock on it (a second process waits, then finds the blob done). On resume the kept prefix is
re-hashed, never trusted blindly, and the source is asked for the rest from that offset.
Within a run, a retryable failure of the source continues from the bytes already written.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from mirror.endpoint import BlobSource
from mirror.errors import ContentError, SizeMismatch
from mirror.oci.digest import DigestHasher, check_content
from mirror.oci.model import Descriptor
from mirror.retry import RetryPolicy
from mirror.support.fsutil import open_locked
from mirror.support.tasks import finish_in_thread

__all__ = ["fill_partial", "lock_partial", "read_small"]

_WRITE_BUFFER = 4 * 1024 * 1024
#: what arrived is written once it is a hundredth of the blob (or _WRITE_BUFFER): a killed
#: process loses no more of a blob than that, besides what the kernel held for it
_WRITES_PER_BLOB = 100
#: ... but not in smaller batches than this (each costs a worker thread's hop)
_MIN_WRITE = 256 * 1024
_log = logging.getLogger("mirror.layout")


async def lock_partial(path: Path) -> int:
    """Open (creating) the partial file and wait for its exclusive lock; return the fd."""
    return await open_locked(path)


def _rehash_prefix(fd: int, desc: Descriptor) -> DigestHasher:
    """Hash what the partial holds; drop it when it is longer than the blob."""
    hasher = DigestHasher(desc.digest.algorithm)
    size = os.fstat(fd).st_size
    if size > desc.size:
        os.ftruncate(fd, 0)
        return hasher
    os.lseek(fd, 0, os.SEEK_SET)
    left = size
    while left > 0:
        chunk = os.read(fd, min(_WRITE_BUFFER, left))
        if not chunk:
            break
        hasher.update(chunk)
        left -= len(chunk)
    if hasher.size != size:  # the file shrank under us: start over
        os.ftruncate(fd, 0)
        return DigestHasher(desc.digest.algorithm)
    return hasher


def _write_and_hash(fd: int, chunks: list[bytes], hasher: DigestHasher) -> None:
    """Append the chunks and feed them to the hasher (in a worker thread: hashing frees the GIL)."""
    pending = [memoryview(c) for c in chunks]
    while pending:
        written = os.writev(fd, pending[:1024])
        while written and pending:
            if written >= len(pending[0]):
                written -= len(pending.pop(0))
            else:
                pending[0] = pending[0][written:]
                written = 0
    for chunk in chunks:
        hasher.update(chunk)
    _start_writeback(fd)


def _start_writeback(fd: int) -> None:
    """Have the kernel start writing the file out now and drop the pages already written, so
    that the final fsync has little left to wait for and a big blob does not fill the cache
    (Linux: POSIX_FADV_DONTNEED starts writeback of dirty pages without waiting for it)."""
    if sys.platform == "linux":
        os.posix_fadvise(fd, 0, os.lseek(fd, 0, os.SEEK_CUR), os.POSIX_FADV_DONTNEED)


async def _append(fd: int, source: BlobSource, desc: Descriptor, hasher: DigestHasher) -> None:
    """Append the source's bytes from `hasher.size` on; the hasher tracks what is on disk."""
    chunks: list[bytes] = []
    pending = 0
    batch_size = min(_WRITE_BUFFER, max(_MIN_WRITE, desc.size // _WRITES_PER_BLOB))

    async def flush() -> None:
        nonlocal chunks, pending
        if chunks:
            batch, chunks, pending = chunks, [], 0
            await finish_in_thread(_write_and_hash, fd, batch, hasher)

    try:
        async for chunk in source(hasher.size):
            if hasher.size + pending + len(chunk) > desc.size:
                raise SizeMismatch(f"blob {desc.digest}: more than the expected {desc.size} bytes")
            chunks.append(chunk)
            pending += len(chunk)
            if pending >= batch_size:
                await flush()
    finally:
        # keep what arrived: it is a valid prefix whatever stopped the stream
        await flush()


async def fill_partial(fd: int, desc: Descriptor, source: BlobSource, retry: RetryPolicy) -> int:
    """Complete and verify the locked partial file; fsync it. Return the bytes transferred.

    Raises ContentError when the whole content does not match (the partial is emptied so the
    next try starts from zero); other errors leave the valid prefix for a later resume.
    """
    hasher = await finish_in_thread(_rehash_prefix, fd, desc)
    resumed_at = hasher.size
    if resumed_at:
        _log.info("resuming %s at byte %d of %d", desc.digest, resumed_at, desc.size)
    await finish_in_thread(os.lseek, fd, hasher.size, os.SEEK_SET)
    attempts = retry.attempts()
    while True:
        try:
            await _append(fd, source, desc, hasher)
            check_content(hasher, desc.digest, desc.size, "blob")
            break
        except ContentError:
            await finish_in_thread(os.ftruncate, fd, 0)
            if resumed_at == 0:
                raise
            # a kept prefix may have been bad: one more pass from zero before giving up
            _log.info("resumed %s did not verify: fetching it whole", desc.digest)
            resumed_at = 0
            hasher = DigestHasher(desc.digest.algorithm)
            await finish_in_thread(os.lseek, fd, 0, os.SEEK_SET)
        except Exception as exc:
            await attempts.failed(exc)
    await finish_in_thread(os.fsync, fd)
    return desc.size - resumed_at


async def read_small(source: BlobSource, desc: Descriptor, retry: RetryPolicy) -> list[bytes]:
    """A small blob's bytes in memory (never more than its size), retried from the start."""
    attempts = retry.attempts()
    while True:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in source(0):
                size += len(chunk)
                if size > desc.size:
                    raise SizeMismatch(
                        f"blob {desc.digest}: more than the expected {desc.size} bytes"
                    )
                chunks.append(chunk)
            return chunks
        except Exception as exc:
            await attempts.failed(exc)
