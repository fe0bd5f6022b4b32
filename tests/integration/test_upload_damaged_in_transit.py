"""Bytes damaged on the way to the registry: when it refuses the final digest (`PUT ?digest=`
answered 400 DIGEST_INVALID), the upload starts afresh once in the same run and drops its
saved session; a second refusal is final, in one line naming the blob. A front end in front
of the real registry flips a byte of upload bodies, as a middlebox might."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

import mirror
from fixtures.generate import make_big_image
from mirror.errors import MirrorError, RegistryError
from mirror.layout import Layout
from mirror.oci.model import Descriptor
from mirror.registry import RegistryOptions
from mirror.retry import DEFAULT_RETRIES
from tests.support.scripted import FaultProxy

MiB = 1024 * 1024


async def _image(root: Path) -> Descriptor:
    """A layout of one image with a 3 MiB layer; the layer."""
    make_big_image(root, "img", 1, 3 * MiB, seed=11)
    async with await Layout.open(root) as layout:
        manifest = await layout.manifest_get("img")
    return manifest.children[1]


def _chunked(tmp_path: Path, retries: int = DEFAULT_RETRIES) -> RegistryOptions:
    """Options under which the 3 MiB layer goes up in 1 MiB PATCHes."""
    return RegistryOptions(
        chunked_upload_threshold=MiB,
        chunk_size=MiB,
        state_dir=tmp_path / "state",
        retries=retries,
    )


def _sessions(options: RegistryOptions) -> list[Path]:
    return list(options.upload_state_dir().glob("*.json"))


def _commits(proxy: FaultProxy, layer: Descriptor) -> int:
    """How many `PUT ?digest=` of the layer the front end received."""
    return sum(
        1
        for method, path, query in proxy.seen_queries
        if method == "PUT" and "/blobs/uploads/" in path and layer.digest.encoded in query
    )


async def test_a_damaged_patch_is_uploaded_afresh_in_the_same_run(
    counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    proxy, host = counting_proxy
    layer = await _image(tmp_path / "img")
    proxy.damage_uploads_on = r"^PATCH "  # the first PATCH: the layer's first MiB
    options = _chunked(tmp_path)
    await mirror.copy(
        f"oci:{tmp_path / 'img'}:img", f"docker://{host}/damaged/patch:v1", options=options
    )
    assert proxy.damaged == 1
    assert _commits(proxy, layer) == 2  # refused once, then the fresh upload
    assert _sessions(options) == []
    back = await mirror.copy(
        f"docker://{host}/damaged/patch:v1", f"oci:{tmp_path / 'back'}:img", options=options
    )
    async with await Layout.open(tmp_path / "back") as layout:
        assert (await layout.resolve("img")).digest == back.digest


async def test_a_damaged_monolithic_put_is_uploaded_afresh_in_the_same_run(
    counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    proxy, host = counting_proxy
    layer = await _image(tmp_path / "img")
    proxy.damage_uploads_on = rf"^PUT /v2/.*/blobs/uploads/.*{layer.digest.encoded}"
    options = RegistryOptions(state_dir=tmp_path / "state")  # 3 MiB: one PUT
    await mirror.copy(
        f"oci:{tmp_path / 'img'}:img", f"docker://{host}/damaged/put:v1", options=options
    )
    assert proxy.damaged == 1
    assert _commits(proxy, layer) == 2


async def test_a_saved_session_holding_damaged_bytes_does_not_block_the_next_run(
    counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    """Run 1's first PATCH is damaged on the way and run 1 fails before its commit (the front
    end refuses it): its session stays saved. Run 2 resumes it, the registry refuses the
    digest, and run 2 starts the blob afresh: it succeeds, and the session file is gone."""
    proxy, host = counting_proxy
    layer = await _image(tmp_path / "img")
    proxy.damage_uploads_on = r"^PATCH "

    def refuse_commits(request: web.Request) -> web.Response | None:
        committing = request.method == "PUT" and layer.digest.encoded in request.query_string
        return web.Response(status=503) if committing else None

    proxy.answer_instead = refuse_commits
    source, target = f"oci:{tmp_path / 'img'}:img", f"docker://{host}/damaged/saved:v1"
    with pytest.raises(MirrorError, match="503"):
        await mirror.copy(source, target, options=_chunked(tmp_path, retries=0))
    options = _chunked(tmp_path)
    assert len(_sessions(options)) == 1
    assert proxy.damaged == 1
    proxy.answer_instead = None
    await mirror.copy(source, target, options=options)
    assert _sessions(options) == []
    assert _commits(proxy, layer) == 3  # run 1 (refused by the front end), run 2 twice


async def test_a_blob_damaged_on_every_attempt_fails_in_one_line_and_leaves_no_session(
    counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    proxy, host = counting_proxy
    layer = await _image(tmp_path / "img")
    proxy.damage_uploads_on, proxy.damage_uploads = r"^PATCH ", -1
    options = _chunked(tmp_path)
    with pytest.raises(RegistryError) as raised:
        await mirror.copy(
            f"oci:{tmp_path / 'img'}:img", f"docker://{host}/damaged/always:v1", options=options
        )
    assert _sessions(options) == []
    assert _commits(proxy, layer) == 2  # afresh once, not more
    message = str(raised.value)
    assert "\n" not in message
    assert str(layer.digest) in message
    assert "refused" in message
