"""A blob's bytes sent from where they lie (a layout's file, or a member's span of a tar) by
the kernel's `sendfile` where the transport allows it (plain TCP), else read in bounded
chunks: memory stays flat whatever the size; `Range` answered with 206 or 416."""

from __future__ import annotations

import asyncio
import os
import re
from typing import IO, Any

from aiohttp import web

from mirror.serve.answers import ApiError

__all__ = ["CHUNK", "SpanResponse", "parse_range"]

#: what one read of the fallback takes
CHUNK = 1024 * 1024
#: what one `sendfile` call sends: each slice must leave within the stall timeout
SLICE = 16 * 1024 * 1024

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte a `Range` header asks of a `size`-byte blob; None for the
    whole blob; 416 when it asks for nothing the blob holds (one range only)."""
    if header is None:
        return None
    found = _RANGE.fullmatch(header.strip())
    unsatisfiable = ApiError(
        416,
        "BLOB_UNKNOWN",
        "the range is not within the blob",
        {"Content-Range": f"bytes */{size}"},
    )
    if found is None or found[1] == found[2] == "":
        raise unsatisfiable
    if found[1] == "":  # the last N bytes
        suffix = int(found[2])
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(found[1])
    last = int(found[2]) if found[2] else size - 1
    if first >= size or last < first:
        raise unsatisfiable
    return first, min(last, size - 1)


class SpanResponse(web.StreamResponse):
    """`count` bytes of the open file `fd` from `offset` (the file is closed when sent); a
    client that takes nothing for `stall` seconds is cut off."""

    def __init__(
        self, fd: int, offset: int, count: int, *, status: int = 200, stall: float = 60.0
    ) -> None:
        super().__init__(status=status)
        self._stall = stall
        self._file: IO[bytes] = os.fdopen(fd, "rb", buffering=0)
        self._offset = offset
        self._count = count
        self.content_length = count

    async def prepare(self, request: web.BaseRequest) -> Any:
        """Send headers, then the span (nothing for HEAD)."""
        try:
            writer = await super().prepare(request)
            if request.method != "HEAD" and self._count > 0:
                await self._send(request)
            await super().write_eof()
            return writer
        finally:
            self._file.close()

    async def _send(self, request: web.BaseRequest) -> None:
        loop = asyncio.get_running_loop()
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        position, left = self._offset, self._count
        try:
            if transport.get_extra_info("sslcontext") is None:
                while left > 0:
                    size = min(SLICE, left)
                    await asyncio.wait_for(
                        loop.sendfile(transport, self._file, position, size), self._stall
                    )
                    position += size
                    left -= size
            else:
                await self._copy(loop, position, left)
        except NotImplementedError:
            await self._copy(loop, position, left)
        except TimeoutError:
            transport.abort()
            raise ConnectionResetError("the client stopped reading") from None

    async def _copy(self, loop: asyncio.AbstractEventLoop, position: int, left: int) -> None:
        """The span in chunks read in a worker thread (TLS, or no sendfile)."""
        while left > 0:
            chunk = await loop.run_in_executor(
                None, os.pread, self._file.fileno(), min(CHUNK, left), position
            )
            if not chunk:
                raise ConnectionResetError("the stored blob ended early")
            await asyncio.wait_for(self.write(chunk), self._stall)
            position += len(chunk)
            left -= len(chunk)
