"""Blob uploads: one PUT for small blobs; chunked PATCHes that resume, even across restarts.

A chunked upload saves its session (Location and offset) after every chunk, each at most a
64th of the blob, 4 MiB at least (a chunk cut short behind a buffering front end is lost
whole). When a
PATCH fails, or a new process finds a saved session, it asks the registry where the upload stands
(GET Location: 204 with `Range: 0-N`) and continues from N+1; a registry that forgot the
session (404) gets a fresh upload.

Both hash what they send and finish the upload (`PUT ?digest=`) only when every byte
matches, whatever the registry would check; an upload resumed from an earlier run reads and
hashes the part that run sent, without sending it again.

The commit (`PUT ?digest=`) is one unit that checks before anything is sent again: when its
answer is lost (the connection cut, a 5xx: the registry may have acted on it) or says the
upload is gone (404), the registry is asked for the blob (HEAD), and a blob there at its
size is taken as committed. When the registry refuses the digest (400 DIGEST_INVALID: what it
received was damaged on the way), the saved session is dropped and the blob uploaded afresh,
once; a second refusal is final.

Tries never multiply: a monolithic upload (start, then PUT) is one `Repeat.CHECKED`
operation, whose start is a step of its try; a chunked upload's loop counts its failures in
a row with `Attempts`, asking where the upload stands (and starting afresh) as steps of its
next try, and its commit is one `Repeat.CHECKED` operation. A try after one whose commit's
answer was lost asks for the blob first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import quote

from mirror.endpoint import BlobSource
from mirror.errors import (
    BlobNotFound,
    ContentError,
    MirrorError,
    RegistryError,
    SizeMismatch,
    TransportError,
)
from mirror.oci.digest import DigestHasher, check_content, verify_stream
from mirror.oci.model import Descriptor
from mirror.registry.errors import Missing
from mirror.registry.handle import HoldsHandle, RepositoryHandle
from mirror.registry.sessions import UploadSession, UploadSessions
from mirror.retry import Attempt, Repeat

__all__ = ["upload_blob"]

#: the largest PATCH of a chunked upload: chunks grow from `chunk_size` as an upload goes on
MAX_CHUNK = 128 * 1024 * 1024
#: a PATCH carries at most this share of its blob (but never less than MIN_BOUNDED_CHUNK):
#: a chunk cut short is lost whole behind a front end that buffers request bodies (the
#: registry never sees it), so a killed upload of a large blob resumes having lost at most
#: 1/64 of it (issue 29: at most 2 %). Each PATCH costs the registry a few file writes: a
#: hundredth with 1 MiB chunks made a 1 GiB push to a local docker-registry 1.7x as long;
#: this bound costs it about 1.2x (docs/benchmarks.md)
CHUNKS_PER_BLOB = 64
#: the least a PATCH is cut to by CHUNKS_PER_BLOB (smaller ones cost the registry more than
#: they could save)
MIN_BOUNDED_CHUNK = 4 * 1024 * 1024
#: bounded chunks are whole multiples of this
_CHUNK_ALIGN = 64 * 1024
#: a blob's bytes are sent at most this many times over (a registry that keeps losing what
#: it is sent, or rewinds the upload, ends the upload in one line)
MAX_SENDS = 3
#: seconds to wait for the HTTP client to let go of a chunk's body after an early answer
SLICE_END_WAIT = 30.0
_RANGE_RE = re.compile(r"^(?:bytes=)?0-(\d{1,18})$")
_log = logging.getLogger("mirror.upload")


async def upload_blob(
    repository: RepositoryHandle | HoldsHandle, desc: Descriptor, source: BlobSource
) -> None:
    """Upload a blob to a repository (its handle, or what holds one), chunked above the
    configured threshold, with retries and resume; a digest the registry refuses (bytes
    damaged on the way) starts it afresh once."""
    repo = repository if isinstance(repository, RepositoryHandle) else repository.handle
    options = repo.options
    sessions = UploadSessions(repo.upload_state_dir())
    for fresh in (False, True):
        try:
            if desc.size >= options.chunked_upload_threshold:
                await _chunked(repo, desc, source, sessions)
            else:
                await _monolithic(repo, desc, source)
            return
        except RegistryError as exc:
            if not _digest_refused(exc):
                raise
            what = repo.describe("blob upload", str(desc.digest))
            if fresh:
                raise RegistryError(
                    f"{what}: the registry refused the digest of what it received again, after a"
                    " fresh upload (400 DIGEST_INVALID): the bytes are damaged on the way to it",
                    status=exc.status,
                    method=exc.method,
                    url=exc.url,
                    codes=exc.codes,
                ) from None
            _log.info("%s: the registry refused its digest: uploading it afresh", what)


def _digest_refused(exc: RegistryError) -> bool:
    """True when the registry refused an upload's digest: the bytes it holds are wrong."""
    return "DIGEST_INVALID" in exc.codes


async def _monolithic(repo: RepositoryHandle, desc: Descriptor, source: BlobSource) -> None:
    """Start an upload and PUT the blob whole, as one `Repeat.CHECKED` operation: the start
    is a step of its try, not retried on its own, and a try after one whose commit's answer
    was lost asks first whether that commit went through."""

    async def upload(attempt: Attempt) -> None:
        if await _placed_by_lost_try(repo, desc, attempt):
            return
        location, _ = await repo.start_upload()
        body = verify_stream(source(0), desc.digest, desc.size)
        await _commit(repo, location, desc, body, attempt)

    await repo.retry.run(upload, Repeat.CHECKED)


async def _commit(
    repo: RepositoryHandle,
    location: str,
    desc: Descriptor,
    body: AsyncIterator[bytes] | bytes,
    attempt: Attempt,
) -> None:
    """Finish an upload with `PUT ?digest=`, the step of a `Repeat.CHECKED` operation (its
    try is `attempt`): when its answer is lost (the connection cut, a 5xx) or says the upload
    is gone (404), the blob is committed if the registry has it at its size (HEAD);
    otherwise that answer is raised (a lost one for a retry, which checks first)."""
    try:
        await _finish(repo, location, desc, body, attempt)
    except MirrorError as exc:
        if not _maybe_committed(exc, attempt) or not await _committed(repo, desc):
            raise
        _log.info("%s: its commit's answer was lost (%s); the registry has it", desc.digest, exc)


def _maybe_committed(exc: MirrorError, attempt: Attempt) -> bool:
    """True when a commit may have gone through whatever its answer: the answer was lost (the
    transport marks the try: a cut or a 5xx once the request went out), or the upload is gone
    (404: the HTTP client sends a bodiless PUT again on its own after a cut, and the registry
    no longer knows the upload it finished)."""
    return attempt.answer_lost or isinstance(exc, BlobNotFound)


async def _placed_by_lost_try(repo: RepositoryHandle, desc: Descriptor, attempt: Attempt) -> bool:
    """True when an earlier try's answer was lost and the registry has the blob at its size:
    that try committed it, and nothing is sent again."""
    if not attempt.after_lost_answer or not await _committed(repo, desc):
        return False
    _log.info("%s: an earlier try whose answer was lost committed it", desc.digest)
    return True


async def _committed(repo: RepositoryHandle, desc: Descriptor) -> bool:
    """True when the registry has the blob at its size (one HEAD, a step of the commit's
    try); False also when it cannot be asked (the commit's operation then goes on as it would
    have)."""
    try:
        return await repo.blob_size(desc.digest) == desc.size
    except MirrorError as exc:
        _log.info("%s: could not ask whether its commit went through: %s", desc.digest, exc)
        return False


async def _finish(
    repo: RepositoryHandle,
    location: str,
    desc: Descriptor,
    body: AsyncIterator[bytes] | bytes,
    attempt: Attempt,
) -> None:
    sep = "&" if "?" in location else "?"
    url = await repo.absolute(f"{location}{sep}digest={quote(str(desc.digest), safe='')}")
    length = desc.size if not isinstance(body, bytes) else len(body)
    resp = await repo.transport.request(
        "PUT",
        url,
        scopes=repo.push,
        what=repo.describe("blob upload", str(desc.digest)),
        missing=Missing.BLOB,
        ok=(201, 204),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        data=body,
        replayable=isinstance(body, bytes),
        attempt=attempt,
    )
    resp.release()


async def _chunked(
    repo: RepositoryHandle, desc: Descriptor, source: BlobSource, sessions: UploadSessions
) -> None:
    policy = repo.retry
    key = (repo.registry, repo.name, str(desc.digest))
    saved = sessions.load(*key)
    state = (
        await policy.run(lambda _: _status(repo, saved.location), Repeat.WHOLE) if saved else None
    )
    if saved and state:
        _log.info("resuming upload of %s at byte %d", desc.digest, state[1])
    if state is None or saved is None:
        location, min_chunk = await policy.run(lambda _: repo.start_upload(), Repeat.WHOLE)
        offset = 0
    else:
        (location, offset), min_chunk = state, saved.min_chunk
    chunk = max(repo.options.chunk_size, min_chunk)
    largest = max(_chunk_bound(desc.size), min_chunk)
    attempts = policy.attempts()
    #: a step failed: where the upload stands is asked first (a step of the next try)
    unsure = False
    what = repo.describe("blob upload", str(desc.digest))
    reader = _Reader(source, desc)
    try:
        while True:
            try:
                if unsure:
                    where = await _status(repo, location)
                    if where is None:  # the registry forgot the upload: a fresh one
                        location, min_chunk = await repo.start_upload()
                        offset = 0
                        chunk = max(chunk, min_chunk)
                        largest = max(_chunk_bound(desc.size), min_chunk)
                    else:
                        location, offset = where
                    unsure = False
                # every byte before `offset` hashed (one an earlier run sent is read again)
                await reader.seek(offset, what)
                if offset >= desc.size:
                    break
                if reader.sent > MAX_SENDS * desc.size:
                    raise RegistryError(
                        f"{what}: {reader.sent} bytes sent for a blob of {desc.size}: the "
                        "registry keeps losing what it is sent; giving up"
                    )
                end = min(offset + min(_grown(chunk, offset), largest), desc.size)
                location, offset = await _patch(repo, location, desc, reader, offset, end)
                sessions.save(UploadSession(*key, location, offset, min_chunk))
                attempts.progressed()  # what is counted is failures in a row
            except Exception as exc:
                await attempts.failed(exc)
                unsure = True
        try:
            reader.check()
        except ContentError:
            sessions.drop(*key)  # what went up does not match: the next run starts afresh
            raise
    finally:
        await reader.close()

    async def commit(attempt: Attempt) -> None:
        if not await _placed_by_lost_try(repo, desc, attempt):
            await _commit(repo, location, desc, b"", attempt)

    try:
        await policy.run(commit, Repeat.CHECKED)
    except RegistryError as exc:
        if _digest_refused(exc):
            sessions.drop(*key)  # the bytes at the registry are wrong: never resume them
        raise
    sessions.drop(*key)


def _chunk_bound(size: int) -> int:
    """The largest PATCH for a blob of `size` bytes: a CHUNKS_PER_BLOB-th of it rounded up
    to _CHUNK_ALIGN, not below MIN_BOUNDED_CHUNK."""
    share = -(-size // CHUNKS_PER_BLOB)
    return max(MIN_BOUNDED_CHUNK, -(-share // _CHUNK_ALIGN) * _CHUNK_ALIGN)


def _grown(chunk: int, sent: int) -> int:
    """The next PATCH's size: `chunk`, growing with what went through already (a cut loses at
    most as much as was sent before it), up to MAX_CHUNK."""
    return max(chunk, min(sent, MAX_CHUNK))


async def _patch(
    repo: RepositoryHandle, location: str, desc: Descriptor, reader: _Reader, start: int, end: int
) -> tuple[str, int]:
    """Send bytes [start, end) of the blob; return the next Location and the new offset."""
    what = repo.describe("blob upload", str(desc.digest))
    resp = await repo.transport.request(
        "PATCH",
        await repo.absolute(location),
        scopes=repo.push,
        what=what,
        missing=Missing.BLOB,
        ok=(202, 204),
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{end - 1}",
            "Content-Length": str(end - start),
        },
        data=reader.slice(start, end, what),
        replayable=False,
    )
    resp.release()
    offset = _parse_range(resp.headers.get("Range"))
    if offset is not None and offset != end:
        # progress that goes backwards (or past what was sent) is a failure, not a step
        raise TransportError(
            f"{what}: the registry holds {offset} bytes after a chunk that ended at byte {end}"
        )
    return resp.headers.get("Location") or location, end


class _Reader:
    """The source read once, in order, across the chunks of an upload, and hashed as it goes:
    what one chunk's slice reads past its end is kept for the next, so no byte is fetched (or
    counted) twice. The source is opened again only after a failure or a jump: at the offset
    asked, or where the hashing stopped when that is earlier (the bytes in between are read
    and hashed, not sent), so that every byte of the blob is hashed once, in order."""

    def __init__(self, source: BlobSource, desc: Descriptor) -> None:
        self.source = source
        self.desc = desc
        self.hasher = DigestHasher(desc.digest.algorithm)
        self.stream: AsyncGenerator[bytes, None] | None = None
        self.position = 0  # the offset of the next byte handed out
        self.left = b""  # read from the stream, not yet handed out
        #: bytes handed out to be sent, over every try
        self.sent = 0
        #: set while no slice is being read (the HTTP client reads one in a task of its own)
        self.idle = asyncio.Event()
        self.idle.set()
        #: the slice last handed to the HTTP client
        self._slicing: AsyncGenerator[bytes, None] | None = None

    async def seek(self, offset: int, what: str) -> None:
        """Be ready to hand out the bytes from `offset` on, every byte before it hashed."""
        if self.stream is not None and self.position == offset:
            return
        await self.close()
        start = min(offset, self.hasher.size)
        self.stream, self.position = self.source(start), start
        try:
            while self.position < offset:
                await self._take(offset - self.position, what)
        except BaseException:
            await self.close()
            raise

    def slice(self, start: int, end: int, what: str) -> AsyncGenerator[bytes, None]:
        """Exactly the bytes [start, end) of the source (`seek(start)` first)."""
        self._slicing = self._slice(start, end, what)
        return self._slicing

    async def _slice(self, start: int, end: int, what: str) -> AsyncGenerator[bytes, None]:
        if self.stream is None or self.position != start:
            raise RuntimeError(f"{what}: a slice from {start} asked at {self.position}")
        need = end - start
        self.idle.clear()
        try:
            while need:
                piece = await self._take(need, what)
                need -= len(piece)
                self.sent += len(piece)
                yield piece
        except BaseException:
            await self._close_stream()  # a slice not sent whole: afresh where the upload stands
            raise
        finally:
            self.idle.set()

    async def _take(self, most: int, what: str) -> bytes:
        """The next piece (at most `most` bytes), hashed if it reaches past the hashed part."""
        assert self.stream is not None
        if not self.left:
            self.left = await anext(self.stream, b"")
            if not self.left:
                raise SizeMismatch(f"{what}: source ended at byte {self.position}")
        piece, self.left = self.left[:most], self.left[most:]
        fresh = self.position + len(piece) - self.hasher.size
        if fresh > 0:
            self.hasher.update(piece[len(piece) - fresh :] if fresh < len(piece) else piece)
        self.position += len(piece)
        return piece

    def check(self) -> None:
        """Raise ContentError unless the bytes hashed are exactly the blob's digest and size."""
        check_content(self.hasher, self.desc.digest, self.desc.size, "blob")

    async def close(self) -> None:
        """Close the source stream, if open, once no slice is being read: a registry that
        answers before it read the body leaves the HTTP client's sending task to be cancelled,
        and the stream cannot be closed while that task is inside it. A slice whose sending
        task was cancelled between two pieces is left waiting at its `yield`, alive for as
        long as the failure's traceback holds it: it is closed here (the wait for it to be
        collected was up to SLICE_END_WAIT on a busy machine)."""
        slicing, self._slicing = self._slicing, None
        running = getattr(slicing, "ag_running", False)  # inside it (the sending task)
        if slicing is not None and not self.idle.is_set() and not running:
            with contextlib.suppress(RuntimeError):
                await slicing.aclose()
        try:
            async with asyncio.timeout(SLICE_END_WAIT):
                await self.idle.wait()
        except TimeoutError:
            raise TransportError("an upload's source did not stop being read") from None
        await self._close_stream()

    async def _close_stream(self) -> None:
        if self.stream is not None:
            stream, self.stream, self.left = self.stream, None, b""
            await stream.aclose()


async def _status(repo: RepositoryHandle, location: str) -> tuple[str, int] | None:
    """Where an upload stands: (Location, bytes received), or None if the registry forgot it."""
    resp = await repo.transport.request(
        "GET",
        await repo.absolute(location),
        scopes=repo.push,
        what=f"upload status on {repo.registry}/{repo.name}",
        ok=(204, 404, 400),
    )
    resp.release()
    if resp.status != 204:
        return None
    offset = _parse_range(resp.headers.get("Range"))
    if offset is None:
        raise TransportError(f"upload status on {repo.registry}/{repo.name}: no Range header")
    return resp.headers.get("Location") or location, offset


def _parse_range(header: str | None) -> int | None:
    """Bytes received from `Range: 0-N` (also `bytes=0-N`): N+1; `0-0` is read as nothing."""
    match = _RANGE_RE.match((header or "").strip())
    if not match:
        return None
    last = int(match.group(1))
    return 0 if last == 0 else last + 1
