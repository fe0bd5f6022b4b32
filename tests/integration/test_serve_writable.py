"""`mirror serve --writable`: skopeo and mirror push into a layout while `mirror sync` writes
the same layout (`layout verify --strict` clean after); the upload API as the spec says it
(chunked PATCH with Content-Range, Range and Location, monolithic POST, mounts, refused
digests), manifests by digest with a subject, DELETE only when allowed, and the writers'
lock held only while pushes are in progress."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

import mirror
from fixtures.generate import make_big_image
from mirror.layout import Layout
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from tests.support.registry import Registry
from tests.support.serving import raw_request, serving
from tests.support.tools import FIXTURES, amirror, fixture_digest, skopeo


def _gc_could_run(layout: Path) -> bool:
    """True when nobody holds the layout's writers' lock (gc would take it at once)."""
    fd = os.open(layout / ".mirror" / "writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


async def _start_upload(http: aiohttp.ClientSession, repository: str) -> str:
    """Open an upload session in `repository` (202, as the spec says); its Location."""
    started = await http.post(f"/v2/{repository}/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"]
    assert location.startswith(f"/v2/{repository}/blobs/uploads/")
    return location


async def _verifies_strictly(layout: Path) -> None:
    """`mirror layout verify --strict` finds nothing wrong in `layout`."""
    verified = await amirror("layout", "verify", "--strict", str(layout))
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_skopeo_and_mirror_push_beside_a_sync_into_one_layout(
    registry: Registry, tmp_path: Path
) -> None:
    for i in range(3):
        make_big_image(tmp_path / f"big{i}", "v1", 3, 2 * 1024 * 1024, seed=40 + i)
        await mirror.copy(f"oci:{tmp_path / f'big{i}'}:v1", f"docker://{registry.host}/sh/a:v{i}")
    shared = tmp_path / "shared"
    config = tmp_path / "sync.toml"
    config.write_text(f'[[jobs]]\nsource = "{registry.host}/sh/a"\ndestination = "oci:{shared}"\n')
    with serving("--writable", f"oci:{shared}") as served:
        synced, *_ = await asyncio.gather(
            amirror("sync", str(config)),
            asyncio.to_thread(
                skopeo,
                "copy",
                "--all",
                "--dest-tls-verify=false",
                f"oci:{FIXTURES / 'multi-arch'}:v1",
                f"docker://{served.host}/pushed/multi:v1",
            ),
            mirror.copy(f"oci:{FIXTURES / 'docker-v2'}:v1", f"docker://{served.host}/pushed/d:v1"),
            mirror.copy(f"oci:{tmp_path / 'big2'}:v1", f"docker://{served.host}/pushed/big:v1"),
        )
        assert synced.returncode == 0, synced.stderr
        pulled = await mirror.inspect(f"docker://{served.host}/sh/a:v1")
        assert pulled.digest == (await mirror.inspect(f"docker://{registry.host}/sh/a:v1")).digest
    await _verifies_strictly(shared)
    async with await Layout.open(shared) as layout:
        names = {i.name: str(i.descriptor.digest) for i in await layout.images()}
    assert names["pushed/multi:v1"] == fixture_digest("multi-arch")
    assert names["pushed/d:v1"] == fixture_digest("docker-v2")
    assert {"sh/a:v0", "sh/a:v1", "sh/a:v2", "pushed/big:v1"} <= set(names)


async def test_the_upload_api_as_the_spec_says(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    digest = str(Digest.of(data))
    with serving("--writable", f"oci:{tmp_path / 'w'}") as served:
        async with aiohttp.ClientSession(served.url) as http:
            location = await _start_upload(http, "up/app")
            assert not _gc_could_run(tmp_path / "w")  # an upload is open: gc must wait
            first = await http.patch(
                location,
                data=data[:40_000],
                headers={"Content-Range": "0-39999", "Content-Type": "application/octet-stream"},
            )
            assert (first.status, first.headers["Range"]) == (202, "0-39999")
            skipped = await http.patch(
                first.headers["Location"],
                data=data[50_000:],
                headers={"Content-Range": "50000-99999"},
            )
            assert (skipped.status, skipped.headers["Range"]) == (416, "0-39999")
            status = await http.get(location)
            assert (status.status, status.headers["Range"]) == (204, "0-39999")
            rest = await http.patch(location, data=data[40_000:])
            assert rest.status == 202
            done = await http.put(f"{location}?digest={digest}")
            assert done.status == 201
            assert done.headers["Location"] == f"/v2/up/app/blobs/{digest}"
            assert done.headers["Docker-Content-Digest"] == digest
            got = await http.get(f"/v2/up/app/blobs/{digest}")
            assert await got.read() == data
            mounted = await http.post(f"/v2/other/app/blobs/uploads/?mount={digest}&from=up/app")
            assert (mounted.status, mounted.headers["Location"]) == (
                201,
                f"/v2/other/app/blobs/{digest}",
            )
            small = b"a monolithic upload"
            whole = await http.post(
                f"/v2/up/app/blobs/uploads/?digest={Digest.of(small)}",
                data=small,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert whole.status == 201
            wrong = await http.post(
                f"/v2/up/app/blobs/uploads/?digest={Digest.of(b'other')}", data=small
            )
            assert (wrong.status, (await wrong.json())["errors"][0]["code"]) == (
                400,
                "DIGEST_INVALID",
            )
            unknown = await http.patch("/v2/up/app/blobs/uploads/nope", data=b"x")
            assert unknown.status == 404
        await asyncio.sleep(6)  # idle: the lease is let go
        assert _gc_could_run(tmp_path / "w")
    await _verifies_strictly(tmp_path / "w")


async def test_manifests_by_digest_with_a_subject_and_deletes(tmp_path: Path) -> None:
    root = tmp_path / "w"
    await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", f"oci:{root}:app/one:v1")
    subject = fixture_digest("oci-single")
    subject_size = (FIXTURES / "oci-single" / "blobs" / "sha256" / subject[7:]).stat().st_size
    empty = Digest.of(b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/example",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [{"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2}],
            "subject": {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": subject_size},
        }
    ).encode()
    referrer = str(Digest.of(body))
    for allowed in (False, True):
        extra = ["--allow-delete"] if allowed else []
        with serving("--writable", f"oci:{root}", *extra) as served:
            async with aiohttp.ClientSession(served.url) as http:
                put = await http.post(f"/v2/app/one/blobs/uploads/?digest={empty}", data=b"{}")
                assert put.status == 201
                wrong = await http.put(
                    f"/v2/app/one/manifests/sha256:{'0' * 64}",
                    data=body,
                    headers={"Content-Type": mt.OCI_MANIFEST},
                )
                assert wrong.status == 400
                pushed = await http.put(
                    f"/v2/app/one/manifests/{referrer}",
                    data=body,
                    headers={"Content-Type": mt.OCI_MANIFEST},
                )
                assert pushed.status == 201
                assert pushed.headers["OCI-Subject"] == subject
                found = await (await http.get(f"/v2/app/one/referrers/{subject}")).json()
                assert [d["digest"] for d in found["manifests"]] == [referrer]
                deleted = await http.delete("/v2/app/one/manifests/v1")
                if not allowed:
                    assert deleted.status == 405
                    continue
                assert deleted.status == 202
                gone = await http.get("/v2/app/one/manifests/v1")
                assert gone.status == 404
                again = await http.delete("/v2/app/one/manifests/v1")
                assert again.status == 404


async def test_a_read_only_source_beside_a_writable_one_lends_its_blobs(tmp_path: Path) -> None:
    """A push that a HEAD told of a blob in a read-only source still gets a whole image in
    the writable layout (the blob is copied over when the manifest names it)."""
    with serving(
        "--repository",
        "ro",
        f"oci:{FIXTURES / 'oci-single'}",
        "--writable",
        f"oci:{tmp_path / 'w'}",
    ) as served:
        await mirror.copy(f"docker://{served.host}/ro:v1", f"docker://{served.host}/rw/copy:v1")
        answer = await raw_request(served.host, "GET", "/v2/rw/copy/tags/list")
        assert answer.json()["tags"] == ["v1"]
    await _verifies_strictly(tmp_path / "w")


async def test_two_servers_on_one_layout_keep_their_uploads_apart(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    digest = str(Digest.of(data))
    with serving("--writable", f"oci:{tmp_path / 'w'}") as first:
        async with aiohttp.ClientSession(first.url) as http:
            location = await _start_upload(http, "two/app")
            assert (await http.patch(location, data=data[:20_000])).status == 202
            with serving("--writable", f"oci:{tmp_path / 'w'}") as second:
                assert (await raw_request(second.host, "GET", "/v2/")).status == 200
                assert (await http.patch(location, data=data[20_000:])).status == 202
                done = await http.put(f"{location}?digest={digest}")
                assert done.status == 201, await done.text()


async def test_a_manifest_sent_in_pieces_is_read_whole(tmp_path: Path) -> None:
    empty = Digest.of(b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [],
            "annotations": {f"note.{i}": "x" * 100 for i in range(3000)},
        }
    ).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100_000):
            yield body[start : start + 100_000]
            await asyncio.sleep(0.05)

    with serving("--writable", f"oci:{tmp_path / 'w'}") as served:
        async with aiohttp.ClientSession(served.url) as http:
            assert (
                await http.post(f"/v2/big/m/blobs/uploads/?digest={empty}", data=b"{}")
            ).status == 201
            put = await http.put(
                "/v2/big/m/manifests/v1", data=pieces(), headers={"Content-Type": mt.OCI_MANIFEST}
            )
            assert put.status == 201, await put.text()
            got = await http.get("/v2/big/m/manifests/v1")
            assert await got.read() == body


async def test_an_abandoned_upload_lets_gc_in_after_the_stall_timeout(tmp_path: Path) -> None:
    root = tmp_path / "w"
    with serving("--stall-timeout", "2", "--writable", f"oci:{root}") as served:
        async with aiohttp.ClientSession(served.url) as http:
            location = await _start_upload(http, "gone/app")
            assert (await http.patch(location, data=b"half of a blob")).status == 202
            assert not _gc_could_run(root)
            for _ in range(40):  # the stall timeout, then the lease's idle time
                await asyncio.sleep(0.5)
                if _gc_could_run(root):
                    break
            assert _gc_could_run(root)
            assert (await http.patch(location, data=b"more")).status == 404
            assert list((root / ".mirror" / "uploads").rglob("*")) == [
                root / ".mirror" / "uploads" / f"serve-{served.process.pid}"
            ]
