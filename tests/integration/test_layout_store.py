"""The layout store: naming semantics, verify, gc, and bad input handled in one line."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import pytest

from mirror.endpoint import BlobSource, bytes_source
from mirror.errors import (
    BlobNotFound,
    DigestMismatch,
    InvalidDigest,
    InvalidReference,
    LayoutError,
    ManifestInvalid,
    ManifestNotFound,
    SizeMismatch,
    TransportError,
)
from mirror.layout import Layout, gc, verify
from mirror.layout.conformance import check_document
from mirror.oci import mediatypes as mt
from mirror.oci import model as mirror_model
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, parse_manifest
from mirror.retry import RetryPolicy
from tests.support.layouts import copy_image
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy
from tests.support.tools import FIXTURES, amirror, mirror

CopyFixture = Callable[[str], Path]


def _index(path: Path) -> list[dict[str, object]]:
    return list(json.loads((path / "index.json").read_bytes())["manifests"])


async def test_naming_an_image_again_takes_the_old_image_out(tmp_path: Path) -> None:
    out = tmp_path / "l"
    first = await copy_image(FIXTURES / "oci-single", "v1", out, None)
    second = await copy_image(FIXTURES / "docker-v2", "v1", out, "app")
    # naming the unnamed digest replaces that entry instead of adding one
    await copy_image(FIXTURES / "oci-single", "v1", out, "again")
    entries = _index(out)
    assert [e["digest"] for e in entries] == [first.digest, second.digest]
    assert entries[0]["annotations"] == {"org.opencontainers.image.ref.name": "again"}
    # listed unnamed again, a named image is not listed twice
    await copy_image(FIXTURES / "oci-single", "v1", out, None)
    assert _index(out) == entries
    # a name given to another image takes the place of the image it named, which leaves
    await copy_image(FIXTURES / "docker-v2", "v1", out, "again")
    assert [e["digest"] for e in _index(out)] == [second.digest, second.digest]
    async with await Layout.open(out) as layout:
        assert (await layout.resolve("again")).digest == second.digest
        assert await layout.remove_image("again") == ("again",)
        with pytest.raises(ManifestNotFound, match="'again'"):
            await layout.resolve("again")
        with pytest.raises(ManifestNotFound):
            await layout.remove_image("again")
    assert check_document("layout-index", json.loads((out / "index.json").read_bytes())) == []


async def test_resolve_by_digest_and_the_only_image(tmp_path: Path) -> None:
    out = tmp_path / "l"
    m = await copy_image(FIXTURES / "multi-arch", "v1", out, None)
    async with await Layout.open(out) as layout:
        assert (await layout.resolve(None)).digest == m.digest
        assert (await layout.resolve(str(m.digest))).media_type == mt.OCI_INDEX
        child = m.children[0]
        sniffed = await layout.resolve(str(child.digest))
        assert (sniffed.digest, sniffed.media_type) == (child.digest, mt.OCI_MANIFEST)
    await copy_image(FIXTURES / "oci-single", "v1", out, "two")
    async with await Layout.open(out) as layout:
        with pytest.raises(InvalidReference, match="holds 2 images"):
            await layout.resolve(None)


def _source(data: bytes, asked: list[int], fail_at: int | None = None) -> BlobSource:
    """A source over `data` recording the offsets asked for; it can fail once at `fail_at`."""
    state = {"failed": False}

    async def read(offset: int) -> AsyncGenerator[bytes, None]:
        asked.append(offset)
        if fail_at is not None and not state["failed"] and offset < fail_at:
            state["failed"] = True
            yield data[offset:fail_at]
            raise TransportError("connection reset by peer")
        yield data[offset:]

    return read


async def test_bad_content_never_becomes_visible(tmp_path: Path) -> None:
    async with await Layout.open(tmp_path / "l", create=True) as layout:
        data = b"x" * 1000
        desc = Descriptor(mt.OCI_LAYER_TAR, Digest.of(data), len(data))
        with pytest.raises(DigestMismatch):
            await layout.blob_put(desc, bytes_source(b"y" * 1000))
        with pytest.raises(SizeMismatch):
            await layout.blob_put(desc, bytes_source(data + b"!"))
        assert not await layout.blob_exists(desc)
        assert not layout.blob_path(desc.digest).exists()
        assert list((tmp_path / "l" / ".mirror" / "tmp").iterdir()) == []
        # a large blob goes through a resumable partial file: bad bytes are not kept in it
        big = bytes(range(256)) * 8192
        big_desc = Descriptor(mt.OCI_LAYER_TAR, Digest.of(big), len(big))
        with pytest.raises(DigestMismatch):
            await layout.blob_put(big_desc, bytes_source(big[::-1]))
        partial = tmp_path / "l" / ".mirror" / "partial" / f"sha256-{big_desc.digest.encoded}"
        assert partial.stat().st_size == 0
        assert not layout.blob_path(big_desc.digest).exists()


async def test_interrupted_writes_resume_where_they_stopped(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: large enough for a resumable partial file
    desc = Descriptor(mt.OCI_LAYER_TAR, Digest.of(data), len(data))
    async with await Layout.open(tmp_path / "l", create=True) as layout:
        # a retryable failure within one call continues from the bytes written
        asked: list[int] = []
        await layout.blob_put(desc, _source(data, asked, fail_at=3000))
        assert asked == [0, 3000]
        assert layout.blob_path(desc.digest).read_bytes() == data

    # a small blob is simply read again from the start
    small = b"tiny blob" * 100
    small_desc = Descriptor(mt.OCI_LAYER_TAR, Digest.of(small), len(small))
    async with await Layout.open(tmp_path / "l") as layout:
        asked = []
        await layout.blob_put(small_desc, _source(small, asked, fail_at=300))
        assert asked == [0, 0]
        assert layout.blob_path(small_desc.digest).read_bytes() == small

    other = data[::-1]
    desc2 = Descriptor(mt.OCI_LAYER_TAR, Digest.of(other), len(other))

    async def broken(offset: int) -> AsyncGenerator[bytes, None]:
        yield other[offset:500]
        raise ConnectionResetError("not retryable: the process gives up")

    async with await Layout.open(tmp_path / "l") as layout:
        with pytest.raises(ConnectionResetError):
            await layout.blob_put(desc2, broken)
        assert not layout.blob_path(desc2.digest).exists()
    # a later run re-hashes the kept 500 bytes and asks only for the rest
    async with await Layout.open(tmp_path / "l") as layout:
        asked = []
        await layout.blob_put(desc2, _source(other, asked))
        assert asked == [500]
        assert layout.blob_path(desc2.digest).read_bytes() == other


async def test_a_corrupt_partial_is_fetched_again_whole(tmp_path: Path) -> None:
    data = b"abcdefgh" * 300_000
    desc = Descriptor(mt.OCI_LAYER_TAR, Digest.of(data), len(data))
    async with await Layout.open(tmp_path / "l", create=True) as layout:
        await layout.prepare_writes()  # a new layout exists on disk from its first write
        partial = tmp_path / "l" / ".mirror" / "partial" / f"sha256-{desc.digest.encoded}"
        partial.write_bytes(b"WRONG" + data[5:3000])  # a prefix that lies
        asked: list[int] = []
        await layout.blob_put(desc, _source(data, asked))
        assert asked == [2995 + 5, 0]
        assert layout.blob_path(desc.digest).read_bytes() == data


async def test_manifest_is_refused_until_its_blobs_are_there(tmp_path: Path) -> None:
    async with await Layout.open(FIXTURES / "oci-single") as src:
        manifest = await src.manifest_get("v1")
    async with await Layout.open(tmp_path / "l", create=True) as layout:
        with pytest.raises(BlobNotFound, match="is not in the layout"):
            await layout.manifest_put(manifest)
        assert not (tmp_path / "l").exists()  # refused before anything was written


async def test_verify_reports_each_problem(fixture_copy: CopyFixture) -> None:
    root = fixture_copy("multi-arch")
    index = json.loads((root / "index.json").read_bytes())
    top = Digest(index["manifests"][0]["digest"])
    async with await Layout.open(root) as layout:
        manifest = await layout.manifest_get("v1")
        amd = await layout.manifest_by_descriptor(manifest.children[0])
        layer_a, layer_b = amd.children[1], amd.children[2]
        layout.blob_path(layer_a.digest).unlink()
        flipped = bytearray(layout.blob_path(layer_b.digest).read_bytes())
        flipped[5] ^= 0xFF
        layout.blob_path(layer_b.digest).write_bytes(bytes(flipped))
        (root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"?")
        problems = await verify(layout)
    kinds = sorted((p.kind, p.subject) for p in problems)
    assert kinds == sorted(
        [
            ("missing", str(layer_a.digest)),
            ("corrupt", str(layer_b.digest)),
            ("invalid", "blobs/sha256/not-a-digest"),
        ]
    )
    assert str(top) not in {p.subject for p in problems}  # the index itself is fine
    result = mirror("layout", "verify", str(root))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("mirror: problem: ") for line in lines)


async def test_gc_removes_unreferenced_blobs_and_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "l"
    await copy_image(FIXTURES / "oci-single", "v1", out, "a")
    await copy_image(FIXTURES / "docker-v2", "v1", out, "b")
    before = {p.name for p in (out / "blobs" / "sha256").iterdir()}
    stale = out / ".mirror" / "tmp" / "blob-dead"
    stale.write_bytes(b"partial")
    async with await Layout.open(out) as layout:
        await layout.remove_image("b")
    async with await Layout.open(out) as layout:
        dry = await gc(layout, dry_run=True)
        assert {p.name for p in (out / "blobs" / "sha256").iterdir()} == before
        report = await gc(layout)
        assert report.removed == dry.removed
        assert report.temp_files == 1
        assert not stale.exists()
        assert await verify(layout) == []
        still = await layout.manifest_get("a")
        assert all(layout.blob_path(c.digest).exists() for c in still.children)
    # the docker-v2 config and manifest went; the shared layer stayed
    assert len(report.removed) == 2
    assert len(before) - len(list((out / "blobs" / "sha256").iterdir())) == 2


async def test_gc_refuses_when_a_manifest_is_unreadable(fixture_copy: CopyFixture) -> None:
    root = fixture_copy("multi-arch")
    top = json.loads((root / "index.json").read_bytes())["manifests"][0]["digest"]
    (root / "blobs" / "sha256" / top[7:]).write_bytes(b"garbage!" * 10)
    count = len(list((root / "blobs" / "sha256").iterdir()))
    async with await Layout.open(root) as layout:
        with pytest.raises(LayoutError, match="not collecting garbage"):
            await gc(layout)
    assert len(list((root / "blobs" / "sha256").iterdir())) == count


def _entry(digest: str, size: int = 2, media_type: str = mt.OCI_MANIFEST) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "annotations": {"org.opencontainers.image.ref.name": "bad"},
    }


def _write_index(root: Path, entries: list[dict[str, object]]) -> None:
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))


BAD_DIGESTS = [
    ("sha256:../../x", "lower-case hex"),
    ("md5:" + "a" * 32, "unsupported algorithm"),
    ("sha256:" + "A" * 64, "lower-case hex"),
]


@pytest.mark.parametrize(("digest", "says"), BAD_DIGESTS)
async def test_bad_digest_in_index_is_one_line_and_typed(
    fixture_copy: CopyFixture, digest: str, says: str
) -> None:
    root = fixture_copy("oci-single")
    _write_index(root, [_entry(digest)])
    async with await Layout.open(root) as layout:
        with pytest.raises(InvalidDigest, match=says):
            await layout.manifest_get("bad")
    _assert_cli_fails_in_one_line(root, says)
    assert not (root.parent / "x").exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [(b'{"schemaVersion":2,"manifests":[{"mediaT', "not valid JSON"), (b"\x00\xffnope", "JSON")],
)
async def test_damaged_index_json_is_one_line_and_typed(
    fixture_copy: CopyFixture, content: bytes, says: str
) -> None:
    root = fixture_copy("oci-single")
    (root / "index.json").write_bytes(content)
    async with await Layout.open(root) as layout:
        with pytest.raises(LayoutError, match=says):
            await layout.images()
    _assert_cli_fails_in_one_line(root, says)
    # a write to a layout with a damaged index.json fails without changing it
    with pytest.raises(LayoutError):
        await copy_image(FIXTURES / "docker-v2", "v1", root, "new")
    assert (root / "index.json").read_bytes() == content


async def test_manifest_over_4_mib_is_refused(fixture_copy: CopyFixture) -> None:
    root = fixture_copy("oci-single")
    big = b'{"schemaVersion":2,"mediaType":"' + mt.OCI_MANIFEST.encode() + b'","pad":"'
    big += b"x" * (mt.MAX_MANIFEST_SIZE) + b'"}'
    digest = Digest.of(big)
    (root / "blobs" / "sha256" / digest.encoded).write_bytes(big)
    _write_index(root, [_entry(digest, len(big))])
    async with await Layout.open(root) as layout:
        with pytest.raises(ManifestInvalid, match="limit"):
            await layout.manifest_get("bad")
    _assert_cli_fails_in_one_line(root, "limit")


async def test_missing_blob_is_one_line_and_typed(fixture_copy: CopyFixture) -> None:
    root = fixture_copy("oci-single")
    top = _index(root)[0]["digest"]
    assert isinstance(top, str)
    (root / "blobs" / "sha256" / top[7:]).unlink()
    async with await Layout.open(root) as layout:
        with pytest.raises(ManifestNotFound, match="missing"):
            await layout.manifest_get("v1")
    _assert_cli_fails_in_one_line(root, "missing blob")


def _assert_cli_fails_in_one_line(root: Path, says: str) -> None:
    result = mirror("layout", "verify", str(root))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_usage_and_missing_layout() -> None:
    usage = mirror("layout", "ls")
    assert usage.returncode == 2
    assert usage.stderr.count("\n") == 1
    missing = mirror("layout", "ls", "/nonexistent/layout")
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)
    assert "not an OCI image layout" in missing.stderr
    version = mirror("--version")
    assert version.returncode == 0
    assert "mirror" in version.stdout


async def test_strict_verify_finds_what_the_spec_forbids(tmp_path: Path) -> None:
    out = tmp_path / "l"
    async with await Layout.open(out, create=True) as layout:
        config = await layout.blob_put_bytes(b'{"architecture":"amd64"}', mt.OCI_CONFIG)
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": config.to_json(),
                "layers": [],
            }
        ).encode()
        await layout.image_put(parse_manifest(raw, mt.OCI_MANIFEST), "bad")
    assert mirror("layout", "verify", str(out)).returncode == 0
    strict = mirror("layout", "verify", "--strict", str(out))
    assert strict.returncode == 1
    assert f"{config.digest} (config): os: required" in strict.stderr
    assert f"{config.digest} (config): rootfs: required" in strict.stderr


async def test_a_damaged_layout_blob_is_named_and_never_retried(
    fixture_copy: CopyFixture, registry: Registry, counting_proxy: tuple[FaultProxy, str]
) -> None:
    """Issue 11: a layout blob that no longer matches its digest was reported as a connection
    failure and sent five more times; it is one line naming the file, sent once."""
    proxy, host = counting_proxy
    root = fixture_copy("oci-single")
    async with await Layout.open(root) as layout:
        manifest = await layout.manifest_get("v1")
    assert isinstance(manifest, mirror_model.Manifest)
    layer = root / "blobs" / "sha256" / manifest.layers[0].digest.encoded
    data = bytearray(layer.read_bytes())
    data[10] ^= 0xFF
    layer.write_bytes(bytes(data))
    result = await amirror("push", f"{root}:v1", f"{host}/damaged/app:v1")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"layout file {layer} is damaged" in result.stderr
    puts = [p for m, p in proxy.seen if m == "PUT" and "/blobs/uploads/" in p]
    assert len(puts) <= len(list(manifest.blobs()))  # each blob at most once: no retry


async def test_a_failed_write_keeps_a_new_layout_only_for_what_a_next_run_uses(
    tmp_path: Path,
) -> None:
    """A layout made by a write that fails goes, unless it names an image, holds a large
    blob whole or in part, or another writer holds it."""
    small, large = b"s" * 100, b"L" * (2 * 1024 * 1024)

    def blob(data: bytes) -> Descriptor:
        return Descriptor("application/octet-stream", Digest.of(data), len(data))

    async def write_then_fail(out: Path, data: bytes) -> None:
        async with await Layout.open(out, create=True) as layout:
            await layout.blob_put(blob(data), bytes_source(data))
            raise RuntimeError("the write failed")

    async def failed_write(out: Path, data: bytes) -> None:
        with pytest.raises(RuntimeError):
            await write_then_fail(out, data)

    await failed_write(tmp_path / "a" / "small", small)
    assert not (tmp_path / "a").exists()
    await failed_write(tmp_path / "large", large)
    assert (tmp_path / "large" / "blobs" / "sha256" / Digest.of(large).encoded).exists()
    held = tmp_path / "held"
    layout = await Layout.open(held, create=True)
    await layout.blob_put(blob(small), bytes_source(small))
    other = await Layout.open(held, create=True)  # another writer, from now until it closes
    await layout.__aexit__(RuntimeError, RuntimeError("the write failed"), None)
    await other.aclose()
    assert (held / "oci-layout").exists()

    def broken(data: bytes) -> BlobSource:
        async def stream(offset: int = 0) -> AsyncGenerator[bytes, None]:
            yield data[offset : offset + 1024 * 1024]
            raise RuntimeError("the source failed")

        return stream

    partial = tmp_path / "partial"
    with pytest.raises(RuntimeError):
        async with await Layout.open(partial, create=True, retry=RetryPolicy(retries=0)) as out:
            await out.blob_put(blob(large), broken(large))
    kept = list((partial / ".mirror" / "partial").iterdir())
    assert [p.stat().st_size for p in kept] == [1024 * 1024]  # resumed by the next run
