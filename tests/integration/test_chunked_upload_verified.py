"""A chunked upload hashes what it sends and finishes the upload (`PUT ?digest=`) only when
every byte matches: a damaged source is named and never made visible, whatever the
destination registry would check, also when the upload resumes a session of an earlier run."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

import mirror
from fixtures.generate import make_big_image
from mirror.errors import MirrorError, TransportError
from mirror.layout import Layout
from mirror.oci.model import Descriptor
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions
from mirror.registry.sessions import UploadSession, UploadSessions
from mirror.registry.upload import upload_blob
from tests.support.scripted import FaultProxy

MiB = 1024 * 1024


async def _image(root: Path) -> tuple[Descriptor, Path]:
    """A layout of one image with a 3 MiB layer; the layer and its file."""
    make_big_image(root, "img", 1, 3 * MiB, seed=7)
    async with await Layout.open(root) as layout:
        manifest = await layout.manifest_get("img")
    layer = manifest.children[1]
    return layer, root / "blobs" / "sha256" / layer.digest.encoded


def _damage(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _options(tmp_path: Path) -> RegistryOptions:
    return RegistryOptions(
        chunked_upload_threshold=MiB, chunk_size=MiB, state_dir=tmp_path / "state"
    )


def _path(location: str) -> URL:
    """A Location header as a path with its query."""
    url = URL(location)
    return url.relative() if url.is_absolute() else url


def _finishing_puts(proxy: FaultProxy, layer: Descriptor) -> list[str]:
    return [
        query
        for method, path, query in proxy.seen_queries
        if method == "PUT" and "/blobs/uploads/" in path and layer.digest.encoded in query
    ]


async def test_a_damaged_source_is_never_finished(
    counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    proxy, host = counting_proxy
    layer, path = await _image(tmp_path / "img")
    _damage(path, 2 * MiB + 5)  # in the last chunk
    with pytest.raises(MirrorError, match=f"layout file {path} is damaged"):
        await mirror.copy(
            f"oci:{tmp_path / 'img'}:img",
            f"docker://{host}/verified/damaged:v1",
            options=_options(tmp_path),
        )
    assert _finishing_puts(proxy, layer) == []


async def _sent_by_an_earlier_run(
    host: str, name: str, layer: Descriptor, path: Path, options: RegistryOptions
) -> None:
    """Upload the first 2 MiB of the layer and save the session, as a killed run leaves it."""
    first = path.read_bytes()[: 2 * MiB]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://{host}/v2/{name}/blobs/uploads/") as started:
            assert started.status == 202
            location = _path(started.headers["Location"])
        headers = {"Content-Range": f"0-{2 * MiB - 1}", "Content-Type": "application/octet-stream"}
        url = URL(f"http://{host}").join(location)
        async with session.patch(url, data=first, headers=headers) as sent:
            assert sent.status == 202
            location = _path(sent.headers["Location"])
    UploadSessions(options.upload_state_dir()).save(
        UploadSession(host, name, str(layer.digest), str(location), 2 * MiB)
    )


async def test_a_resumed_upload_hashes_the_prefix_sent_by_an_earlier_run(
    counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    """An earlier run sent the first 2 MiB (a session saved at that offset); the layout's
    first MiB has gone bad since. This run sends only the rest, but reads and hashes the
    prefix too, and refuses to finish."""
    proxy, host = counting_proxy
    layer, path = await _image(tmp_path / "img")
    options = _options(tmp_path)
    await _sent_by_an_earlier_run(host, "verified/resumed", layer, path, options)
    _damage(path, MiB // 2)
    proxy.bytes_in = 0
    with pytest.raises(MirrorError, match=f"layout file {path} is damaged"):
        await mirror.copy(
            f"oci:{tmp_path / 'img'}:img", f"docker://{host}/verified/resumed:v1", options=options
        )
    assert _finishing_puts(proxy, layer) == []
    assert proxy.bytes_in <= MiB + 64 * 1024  # only the rest went up: the prefix was read
    # what went up does not match: the session is not resumed again
    assert not list(options.upload_state_dir().glob("*.json"))


async def test_a_cut_read_of_the_prefix_is_retried_from_where_the_hashing_stopped(
    counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    """The source fails while the prefix an earlier run sent is read again to be hashed: the
    upload's own retries take it up where the hashing stopped, and the blob is finished."""
    proxy, host = counting_proxy
    layer, path = await _image(tmp_path / "img")
    options = _options(tmp_path)
    await _sent_by_an_earlier_run(host, "verified/cut", layer, path, options)
    data = path.read_bytes()
    opened: list[int] = []

    def source(offset: int) -> AsyncGenerator[bytes, None]:
        async def chunks() -> AsyncGenerator[bytes, None]:
            opened.append(offset)
            if len(opened) == 1:
                yield data[offset : offset + 4096]
                raise TransportError("the source was cut")
            for start in range(offset, len(data), 256 * 1024):
                yield data[start : start + 256 * 1024]

        return chunks()

    async with RegistryClient(options) as client:
        repo = client.repository(RegistryReference(host, "verified/cut"), writing=True)
        await upload_blob(repo, layer, source)
    assert opened == [0, 4096]
    assert len(_finishing_puts(proxy, layer)) == 1
