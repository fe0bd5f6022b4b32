"""Content digests: strict parsing, incremental hashing and a verifying async stream."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Final, Protocol

from mirror.errors import DigestMismatch, InvalidDigest, SizeMismatch

__all__ = ["ALGORITHMS", "Digest", "DigestHasher", "check_content", "verify_stream", "verify_whole"]

#: Supported algorithms and the exact shape of their encoded part.
ALGORITHMS: Final[dict[str, re.Pattern[str]]] = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}


class Digest(str):
    """A validated `<algorithm>:<lower-case hex>` string; safe to turn into a path."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        """Validate `value` and return it as a Digest, or raise InvalidDigest."""
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str):
            raise InvalidDigest(f"digest must be a string, got {type(value).__name__}")
        algorithm, sep, encoded = value.partition(":")
        if not sep:
            raise InvalidDigest(f"invalid digest {value[:150]!r}: missing '<algorithm>:'")
        pattern = ALGORITHMS.get(algorithm)
        if pattern is None:
            raise InvalidDigest(
                f"invalid digest {value[:150]!r}: unsupported algorithm {algorithm[:40]!r}"
                f" (supported: {', '.join(ALGORITHMS)})"
            )
        if not pattern.fullmatch(encoded):
            raise InvalidDigest(
                f"invalid digest {value[:150]!r}: {algorithm} needs "
                f"{_hex_length(algorithm)} lower-case hex characters"
            )
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        """The algorithm part, e.g. `sha256`."""
        return self.partition(":")[0]

    @property
    def encoded(self) -> str:
        """The hex part after the colon."""
        return self.partition(":")[2]

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Hash `data` in one go and return its digest."""
        hasher = DigestHasher(algorithm)
        hasher.update(data)
        return hasher.digest()


def _hex_length(algorithm: str) -> int:
    return {"sha256": 64, "sha512": 128}[algorithm]


class DigestHasher:
    """Incremental hasher that also counts bytes."""

    __slots__ = ("_hash", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Feed more bytes."""
        self._hash.update(chunk)
        self.size += len(chunk)

    def digest(self) -> Digest:
        """The digest of all bytes fed so far."""
        return Digest(f"{self.algorithm}:{self._hash.hexdigest()}")

    def copy(self) -> DigestHasher:
        """An independent hasher in the same state."""
        other = DigestHasher.__new__(DigestHasher)
        other.algorithm = self.algorithm
        other._hash = self._hash.copy()
        other.size = self.size
        return other


def check_content(hasher: DigestHasher, digest: Digest, size: int, what: str = "content") -> None:
    """Raise SizeMismatch or DigestMismatch unless the hashed bytes are exactly `digest`/`size`."""
    if hasher.size != size:
        raise SizeMismatch(f"{what} {digest}: expected {size} bytes, got {hasher.size}")
    actual = hasher.digest()
    if actual != digest:
        raise DigestMismatch(f"{what} {digest}: content hashes to {actual}")


async def verify_stream(
    chunks: AsyncIterable[bytes],
    digest: Digest,
    size: int,
    *,
    what: str = "blob",
    hasher: DigestHasher | None = None,
) -> AsyncIterator[bytes]:
    """Yield `chunks` while hashing; never yield past `size`; raise on any mismatch, before the
    chunk that completes `size` is yielded.

    That last chunk is held until the digest verifies and `chunks` has ended (one chunk held
    at most), so a consumer that sends on what it gets never sends a whole wrong blob; it
    must still treat the bytes as unverified until the iterator finishes without error.
    Pass `hasher` already fed with a prefix to verify a resumed stream.
    """
    hasher = hasher or DigestHasher(digest.algorithm)
    last = b""  # the chunk that completed `size`, held until everything verifies
    async for chunk in chunks:
        if not chunk:
            continue
        room = size - hasher.size
        if len(chunk) > room:
            raise SizeMismatch(f"{what} {digest}: more than the expected {size} bytes")
        hasher.update(chunk)
        if hasher.size < size:
            yield chunk
        else:
            last = chunk
    check_content(hasher, digest, size, what)
    if last:
        yield last


class _Sized(Protocol):
    @property
    def digest(self) -> Digest: ...

    @property
    def size(self) -> int: ...


async def verify_whole(
    chunks: AsyncIterable[bytes], desc: _Sized, offset: int
) -> AsyncIterator[bytes]:
    """Verify a read that starts at 0; pass a read from `offset` > 0 through (checked later)."""
    if offset:
        async for chunk in chunks:
            yield chunk
        return
    async for chunk in verify_stream(chunks, desc.digest, desc.size):
        yield chunk
