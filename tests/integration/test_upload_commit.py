"""The commit of an upload (`PUT ?digest=`) is one unit that checks before it sends again:
when its answer is lost (the front end forwards it, then answers 500 or cuts the
connection), mirror asks the registry for the blob (HEAD) and takes it when it is there at
its size. The copy succeeds and the blob's bytes go up once, monolithic or chunked."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

import mirror
from fixtures.generate import make_big_image
from mirror.layout import Layout
from mirror.oci.model import Descriptor
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions
from mirror.registry.upload import upload_blob
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve

MiB = 1024 * 1024
COMMITS = r"^PUT /v2/.*/blobs/uploads/"


def _options(tmp_path: Path, chunked: bool) -> RegistryOptions:
    return RegistryOptions(
        chunked_upload_threshold=MiB if chunked else 64 * MiB,
        chunk_size=MiB,
        state_dir=tmp_path / "state",
    )


def _commits(proxy: FaultProxy, desc: Descriptor) -> int:
    """How many `PUT ?digest=` of the blob the front end received."""
    return sum(
        1
        for method, path, query in proxy.seen_queries
        if method == "PUT" and "/blobs/uploads/" in path and desc.digest.encoded in query
    )


@pytest.mark.parametrize("fault", ["after-500", "after-reset"])
@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
async def test_a_lost_answer_to_every_commit_is_checked_not_sent_again(
    registry: Registry, tmp_path: Path, fault: str, chunked: bool
) -> None:
    make_big_image(tmp_path / "img", "img", 1, 3 * MiB, seed=13)
    async with await Layout.open(tmp_path / "img") as layout:
        manifest = await layout.manifest_get("img")
    layer = manifest.children[1]
    # every commit of a blob is forwarded, and its answer lost
    proxy = FaultProxy(registry.host, rate=1.0, faults=(fault,), fault_on=COMMITS)
    options = _options(tmp_path, chunked)
    name = f"commit/{'chunked' if chunked else 'monolithic'}-{fault}"
    runner = await serve(proxy.app())
    host = address(runner)
    try:
        await mirror.copy(
            f"oci:{tmp_path / 'img'}:img", f"docker://{host}/{name}:v1", options=options
        )
    finally:
        await runner.cleanup()
    assert ("HEAD", f"/v2/{name}/blobs/{layer.digest}") in proxy.seen
    blobs = sum(d.size for d in manifest.children)
    assert blobs <= proxy.bytes_in <= blobs + len(manifest.raw)  # the blobs once, the manifest
    if not chunked:
        assert _commits(proxy, layer) == 1
    assert not list(options.upload_state_dir().glob("*.json"))


async def test_a_commit_replayed_after_a_cut_finds_the_blob_committed(
    registry: Registry, tmp_path: Path
) -> None:
    """The connection is cut after the commit was forwarded; the HTTP client sends the
    bodiless PUT again on its own (PUT is idempotent) and the registry, whose upload is
    finished, answers 404: the HEAD finds the blob, and the upload is done."""
    data = bytes(range(256)) * (12 * 1024)  # 3 MiB
    blob = Descriptor("application/octet-stream", mirror.Digest.of(data), len(data))
    proxy = FaultProxy(
        registry.host, rate=1.0, faults=("after-reset",), fault_on=COMMITS, faults_at_most=1
    )

    def source(offset: int) -> AsyncGenerator[bytes, None]:
        async def chunks() -> AsyncGenerator[bytes, None]:
            for start in range(offset, len(data), 256 * 1024):
                yield data[start : start + 256 * 1024]

        return chunks()

    options = _options(tmp_path, chunked=True)
    runner = await serve(proxy.app())
    try:
        async with RegistryClient(options) as client:
            ref = RegistryReference(address(runner), "commit/replayed")
            await upload_blob(client.repository(ref, writing=True), blob, source)
    finally:
        await runner.cleanup()
    assert proxy.injected == {"after-reset": 1}
    assert ("HEAD", f"/v2/commit/replayed/blobs/{blob.digest}") in proxy.seen
    assert proxy.bytes_in == len(data)
    assert not list(options.upload_state_dir().glob("*.json"))
