"""Whether a request is sent again is decided by its operation: a DELETE whose answer was lost
and is then answered 404 is done, and a retried operation never runs another's retries."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

import mirror
from mirror.errors import ManifestNotFound, ServerError
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions
from mirror.registry.upload import upload_blob
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve
from tests.support.tools import FIXTURES, amirror

#: the DELETE of a manifest by digest (a registry without tag deletes falls back to it)
_MANIFEST_DELETE = r"^DELETE /v2/.*/manifests/sha256:"


@pytest.fixture
async def losing_proxy(registry: Registry) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A front end that forwards the first manifest DELETE, then loses the registry's
    answer (504); yields it and its `host:port`."""
    proxy = FaultProxy(
        registry.host, rate=1.0, faults=("after-504",), fault_on=_MANIFEST_DELETE, faults_at_most=1
    )
    runner = await serve(proxy.app())
    yield proxy, address(runner)
    await runner.cleanup()


def _options(retries: int = 2) -> RegistryOptions:
    return RegistryOptions(use_docker_config=False, retries=retries)


async def _push(host: str, repository: str) -> str:
    result = await mirror.copy(
        f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{host}/{repository}:v1", options=_options()
    )
    return result.digest


async def _gone(host: str, repository: str, digest: str) -> bool:
    async with RegistryClient(_options()) as client:
        repo = client.repository(RegistryReference(host, repository))
        return await repo.manifest_head(digest) is None


@pytest.mark.parametrize("by", ["digest", "tag"])
async def test_a_delete_whose_answer_was_lost_is_done(
    registry: Registry, losing_proxy: tuple[FaultProxy, str], by: str
) -> None:
    proxy, front = losing_proxy
    digest = await _push(registry.host, f"lost/lib-{by}")
    async with RegistryClient(_options()) as client:
        repo = client.repository(RegistryReference(front, f"lost/lib-{by}"))
        if by == "digest":
            await repo.manifest_delete(Digest(digest))
        else:
            await repo.tag_delete("v1")
    assert proxy.injected_on == [("DELETE", "after-504")]
    deletes = [path for method, path in proxy.seen if method == "DELETE"]
    assert deletes[-2:] == [f"/v2/lost/lib-{by}/manifests/{digest}"] * 2, deletes
    assert await _gone(registry.host, f"lost/lib-{by}", digest)


@pytest.mark.parametrize("by", ["digest", "tag"])
async def test_mirror_delete_whose_answer_was_lost_says_deleted(
    registry: Registry, losing_proxy: tuple[FaultProxy, str], by: str
) -> None:
    proxy, front = losing_proxy
    digest = await _push(registry.host, f"lost/cli-{by}")
    ref = f"{front}/lost/cli-{by}@{digest}" if by == "digest" else f"{front}/lost/cli-{by}:v1"
    done = await amirror("delete", ref)
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout
    assert proxy.injected_on == [("DELETE", "after-504")]
    assert await _gone(registry.host, f"lost/cli-{by}", digest)


async def test_a_delete_answered_404_at_once_is_not_found(
    counting_proxy: tuple[FaultProxy, str],
) -> None:
    proxy, front = counting_proxy
    absent = Digest.of(b"never pushed")
    async with RegistryClient(_options()) as client:
        repo = client.repository(RegistryReference(front, "lost/absent"))
        with pytest.raises(ManifestNotFound, match="not found"):
            await repo.manifest_delete(absent)
    said = await amirror("delete", f"{front}/lost/absent@{absent}")
    assert (said.returncode, said.stderr.count("\n")) == (1, 1)
    assert "not found" in said.stderr
    assert [m for m, _ in proxy.seen if m == "DELETE"] == ["DELETE"] * 2  # one each, final


async def test_a_delete_refused_for_now_then_answered_404_is_not_found(
    registry: Registry,
) -> None:
    """A 429 is a refusal (the registry did nothing): the 404 that follows is the answer."""
    proxy = FaultProxy(
        registry.host, rate=1.0, faults=("429",), fault_on=_MANIFEST_DELETE, faults_at_most=1
    )
    runner = await serve(proxy.app())
    absent = Digest.of(b"never pushed either")
    try:
        async with RegistryClient(_options()) as client:
            repo = client.repository(RegistryReference(address(runner), "lost/absent"))
            with pytest.raises(ManifestNotFound, match="not found"):
                await repo.manifest_delete(absent)
    finally:
        await runner.cleanup()
    assert proxy.injected_on == [("DELETE", "429")]


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_head_whose_fallback_get_fails_is_not_retried_inside_a_retry(
    registry: Registry, retries: int
) -> None:
    """A HEAD answered without a digest falls back to a GET; that GET failing with 503 is
    asked retries + 1 times in all, and the HEAD once (no retry runs inside another)."""
    registry.push_fixture("oci-single", "nested/app")

    def digestless_head(request: web.Request) -> web.Response | None:
        if request.method == "HEAD" and "/manifests/" in request.path:
            return web.Response(status=200)  # a front end that drops the digest header
        return None

    proxy = FaultProxy(registry.host, rate=1.0, faults=("503",), fault_on=r"^GET /v2/.*/manifests/")
    proxy.answer_instead = digestless_head
    runner = await serve(proxy.app())
    try:
        async with RegistryClient(_options(retries)) as client:
            repo = client.repository(RegistryReference(address(runner), "nested/app"))
            with pytest.raises(ServerError, match="503"):
                await repo.manifest_head("v1")
    finally:
        await runner.cleanup()
    asked = Counter(method for method, path in proxy.seen if "/manifests/" in path)
    assert asked == {"HEAD": 1, "GET": retries + 1}, asked


#: the POST that opens an upload session
_UPLOAD_START = r"^POST /v2/.*/blobs/uploads/$"
#: a chunked upload's PATCHes and status GETs on its session
_UPLOAD_SESSION = r"^(PATCH|GET) /v2/.*/blobs/uploads/."


def _blob(size: int) -> tuple[Descriptor, Callable[[int], AsyncGenerator[bytes, None]]]:
    """A blob of `size` bytes and its source."""
    data = bytes(range(256)) * (size // 256)
    desc = Descriptor("application/octet-stream", Digest.of(data), len(data))

    async def source(offset: int) -> AsyncGenerator[bytes, None]:
        yield data[offset:]

    return desc, source


async def _upload_through(
    proxy: FaultProxy, options: RegistryOptions, repository: str, size: int
) -> None:
    desc, source = _blob(size)
    runner = await serve(proxy.app())
    try:
        async with RegistryClient(options) as client:
            repo = client.repository(RegistryReference(address(runner), repository), writing=True)
            with pytest.raises(ServerError, match="503"):
                await upload_blob(repo, desc, source)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_monolithic_upload_whose_start_always_fails_is_tried_retries_plus_one_times(
    registry: Registry, tmp_path: Path, retries: int
) -> None:
    """The upload (start, then PUT) is one operation: its POST is not retried inside it."""
    proxy = FaultProxy(registry.host, rate=1.0, faults=("503",), fault_on=_UPLOAD_START)
    options = RegistryOptions(use_docker_config=False, retries=retries, state_dir=tmp_path)
    await _upload_through(proxy, options, "nested/monolithic", 64 * 1024)
    posts = [path for method, path in proxy.seen if method == "POST"]
    assert len(posts) == retries + 1, posts


async def test_a_chunked_upload_counts_its_status_checks_among_its_tries(
    registry: Registry, tmp_path: Path
) -> None:
    """Every PATCH and every status check of a chunked upload fails (503): the status check
    after a failed PATCH is a try of the upload's own loop, not a retried operation inside
    it, so the session is asked retries + 1 times in all."""
    proxy = FaultProxy(registry.host, rate=1.0, faults=("503",), fault_on=_UPLOAD_SESSION)
    options = RegistryOptions(
        use_docker_config=False,
        retries=2,
        chunk_size=64 * 1024,
        chunked_upload_threshold=64 * 1024,
        state_dir=tmp_path,
    )
    await _upload_through(proxy, options, "nested/chunked", 256 * 1024)
    asked = [m for m, path in proxy.seen if m in ("PATCH", "GET") and "/uploads/" in path]
    assert len(asked) == 3, asked


@pytest.mark.parametrize("by", ["digest", "tag"])
async def test_a_delete_whose_connection_was_cut_after_forwarding_is_done(
    registry: Registry, by: str
) -> None:
    """The HTTP client sends a DELETE again by itself after a cut connection, inside one of
    our tries: the registry had deleted, and that repeat's 404 is not "not found"."""
    proxy = FaultProxy(
        registry.host,
        rate=1.0,
        faults=("after-reset",),
        fault_on=_MANIFEST_DELETE,
        faults_at_most=1,
    )
    runner = await serve(proxy.app())
    try:
        front = address(runner)
        digest = await _push(registry.host, f"cut/lib-{by}")
        async with RegistryClient(_options()) as client:
            repo = client.repository(RegistryReference(front, f"cut/lib-{by}"))
            if by == "digest":
                await repo.manifest_delete(Digest(digest))
            else:
                await repo.tag_delete("v1")
    finally:
        await runner.cleanup()
    assert proxy.injected_on == [("DELETE", "after-reset")]
    assert await _gone(registry.host, f"cut/lib-{by}", digest)
