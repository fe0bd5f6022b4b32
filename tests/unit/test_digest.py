"""Digest parsing, hashing, and the verifying stream."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from mirror.errors import DigestMismatch, InvalidDigest, MirrorError, SizeMismatch
from mirror.oci.digest import Digest, DigestHasher, verify_stream

HELLO = b"hello"
HELLO_256 = "sha256:" + hashlib.sha256(HELLO).hexdigest()
HELLO_512 = "sha512:" + hashlib.sha512(HELLO).hexdigest()


def test_valid_digests_parse_and_split() -> None:
    d = Digest(HELLO_256)
    assert (d.algorithm, d.encoded) == ("sha256", HELLO_256[7:])
    assert Digest(HELLO_512).algorithm == "sha512"
    assert Digest.of(HELLO) == HELLO_256
    assert Digest.of(HELLO, "sha512") == HELLO_512


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sha256:../../x", "lower-case hex"),
        ("md5:" + "a" * 32, "unsupported algorithm"),
        ("sha256:" + "A" * 64, "lower-case hex"),
        ("sha256:" + "a" * 63, "64"),
        ("sha512:" + "a" * 64, "128"),
        ("a" * 64, "missing"),
        ("", "missing"),
        ("sha256:" + "a" * 64 + "/..", "lower-case hex"),
    ],
)
def test_invalid_digests_raise_one_clear_line(text: str, says: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        Digest(text)
    assert says in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, MirrorError)


def test_hasher_counts_and_copies() -> None:
    h = DigestHasher()
    h.update(b"hel")
    twin = h.copy()
    h.update(b"lo")
    assert (h.size, h.digest()) == (5, HELLO_256)
    assert twin.size == 3


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_verify_stream_passes_exact_content() -> None:
    out = [c async for c in verify_stream(_chunks(b"he", b"", b"llo"), Digest(HELLO_256), 5)]
    assert b"".join(out) == HELLO


async def test_verify_stream_never_yields_past_size() -> None:
    got: list[bytes] = []

    async def consume() -> None:
        async for c in verify_stream(_chunks(b"hel", b"lo!!"), Digest(HELLO_256), 5):
            got.append(c)

    with pytest.raises(SizeMismatch):
        await consume()
    assert b"".join(got) == b"hel"


async def test_verify_stream_detects_short_and_wrong_content() -> None:
    with pytest.raises(SizeMismatch):
        _ = [c async for c in verify_stream(_chunks(b"hell"), Digest(HELLO_256), 5)]
    with pytest.raises(DigestMismatch):
        _ = [c async for c in verify_stream(_chunks(b"jello"), Digest(HELLO_256), 5)]


async def test_verify_stream_resumes_with_a_prefed_hasher() -> None:
    h = DigestHasher()
    h.update(b"hel")
    out = [c async for c in verify_stream(_chunks(b"lo"), Digest(HELLO_256), 5, hasher=h)]
    assert out == [b"lo"]


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ((b"he", b"llx"), DigestMismatch),  # the size reached, the digest wrong
        ((b"he", b"llo", b"", b"!"), SizeMismatch),  # the right bytes, then more
    ],
    ids=["wrong", "longer"],
)
async def test_verify_stream_holds_back_the_final_chunk_of_a_stream_that_does_not_verify(
    parts: tuple[bytes, ...], error: type[Exception]
) -> None:
    """The chunk that completes the size is handed over only once the digest verifies and the
    stream has ended: a consumer sending on what it gets (a PUT body) never completes a
    wrong blob."""
    got: list[bytes] = []

    async def consume() -> None:
        async for c in verify_stream(_chunks(*parts), Digest(HELLO_256), 5):
            got.append(c)

    with pytest.raises(error):
        await consume()
    assert got == [b"he"]


async def test_verify_stream_hands_over_every_chunk_of_a_stream_that_verifies() -> None:
    h = DigestHasher()
    h.update(b"h")
    chunks = verify_stream(_chunks(b"e", b"l", b"lo"), Digest(HELLO_256), 5, hasher=h)
    assert [c async for c in chunks] == [b"e", b"l", b"lo"]
