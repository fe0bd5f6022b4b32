"""`mirror serve`: a layout, an oci-archive and a bundle served side by side, pulled whole by
skopeo and mirror with the source's digests; requests outside the grammar refused before
they reach a file; pushes to a read-only server refused; SIGTERM ends it with 0."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path

import pytest

import mirror
from mirror.layout import Layout
from mirror.oci.digest import Digest
from tests.support.registry import Registry
from tests.support.serving import (
    Served,
    build_sources,
    pack_layout,
    raw_request,
    serve_refused,
    serving,
    start_serve,
)
from tests.support.tools import FIXTURES, amirror, fixture_digest, skopeo

KINDS = ("oci-single", "multi-arch", "docker-v2")


@pytest.fixture(scope="session")
def sources(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A layout naming `serve/<kind>:v1`, an oci-archive of plain tags `<kind>`, and a bundle
    of `bundled/<kind>:v1` made from the registry."""
    root = tmp_path_factory.mktemp("served")
    return build_sources(registry.host, root, KINDS, "serve", "bundled")


def _expected() -> list[tuple[str, str]]:
    """Every image served from the three sources, and the digest it must have."""
    out = []
    for kind in KINDS:
        digest = fixture_digest(kind)
        out += [(f"serve/{kind}:v1", digest), (f"arch:{kind}", digest)]
        out.append((f"bundled/{kind}:v1", digest))
    return out


def _serve_all(sources: dict[str, Path]) -> contextlib.AbstractContextManager[Served]:
    return serving(
        "--repository",
        "arch",
        f"oci:{sources['layout']}",
        f"oci-archive:{sources['archive']}",
        str(sources["bundle"]),
    )


async def test_skopeo_and_mirror_pull_every_image_with_the_sources_digests(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    with _serve_all(sources) as served:
        assert isinstance(served, Served)
        for i, (name, digest) in enumerate(_expected()):
            out = tmp_path / f"skopeo-{i}"
            skopeo(
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
                f"docker://{served.host}/{name}",
                f"dir:{out}",
            )
            assert Digest.of((out / "manifest.json").read_bytes()) == digest, name
            into = tmp_path / f"mirror-{i}"
            await mirror.copy(f"docker://{served.host}/{name}", f"oci:{into}:x")
            async with await Layout.open(into) as layout:
                assert str((await layout.resolve("x")).digest) == digest, name
        catalog = (await raw_request(served.host, "GET", "/v2/_catalog")).json()
        assert catalog["repositories"] == sorted(
            ["arch", *(f"serve/{k}" for k in KINDS), *(f"bundled/{k}" for k in KINDS)]
        )


async def test_manifests_and_blobs_answer_as_the_spec_says(sources: dict[str, Path]) -> None:
    digest = fixture_digest("docker-v2")
    with _serve_all(sources) as served:
        base = await raw_request(served.host, "GET", "/v2/")
        assert base.status == 200
        assert base.headers["docker-distribution-api-version"] == "registry/2.0"
        for ref in ("v1", digest):
            head = await raw_request(served.host, "HEAD", f"/v2/serve/docker-v2/manifests/{ref}")
            got = await raw_request(served.host, "GET", f"/v2/serve/docker-v2/manifests/{ref}")
            stored = (FIXTURES / "docker-v2" / "blobs" / "sha256" / digest[7:]).read_bytes()
            assert got.body == stored
            for answer in (head, got):
                assert answer.status == 200
                assert answer.headers["content-type"] == (
                    "application/vnd.docker.distribution.manifest.v2+json"
                )
                assert answer.headers["docker-content-digest"] == digest
                assert answer.headers["content-length"] == str(len(stored))
            assert head.body == b""
        layer = json.loads(stored)["layers"][0]
        path = f"/v2/bundled/docker-v2/blobs/{layer['digest']}"
        whole = await raw_request(served.host, "GET", path)
        assert (whole.status, len(whole.body)) == (200, layer["size"])
        assert whole.headers["docker-content-digest"] == layer["digest"]
        part = await raw_request(served.host, "GET", path, {"Range": "bytes=5-14"})
        assert (part.status, part.body) == (206, whole.body[5:15])
        assert part.headers["content-range"] == f"bytes 5-14/{layer['size']}"
        tail = await raw_request(served.host, "GET", path, {"Range": "bytes=-3"})
        assert (tail.status, tail.body) == (206, whole.body[-3:])
        beyond = await raw_request(served.host, "GET", path, {"Range": f"bytes={layer['size']}-"})
        assert beyond.status == 416
        assert beyond.headers["content-range"] == f"bytes */{layer['size']}"
        head = await raw_request(served.host, "HEAD", path)
        assert (head.status, head.headers["content-length"], head.body) == (
            200,
            str(layer["size"]),
            b"",
        )
        missing = "sha256:" + "0" * 64
        for kind, path, code in (
            ("blob", f"/v2/arch/blobs/{missing}", "BLOB_UNKNOWN"),
            ("manifest", f"/v2/arch/manifests/{missing}", "MANIFEST_UNKNOWN"),
            ("tag", "/v2/arch/manifests/nope", "MANIFEST_UNKNOWN"),
            ("repository", "/v2/nope/manifests/v1", "NAME_UNKNOWN"),
            ("repository tags", "/v2/nope/tags/list", "NAME_UNKNOWN"),
        ):
            answer = await raw_request(served.host, "GET", path)
            assert (answer.status, answer.code) == (404, code), kind


HOSTILE = [
    ("/v2/../../../etc/passwd", 404, "UNSUPPORTED"),
    ("/v2/serve/../serve/oci-single/manifests/v1", 400, "NAME_INVALID"),
    ("/v2/serve%2foci-single/manifests/v1", 400, "NAME_INVALID"),
    ("/v2/serve/oci-single/manifests/..%2f..%2findex.json", 400, "NAME_INVALID"),
    ("/v2/serve/oci-single/manifests/..", 404, "MANIFEST_UNKNOWN"),
    ("/v2/serve/oci-single/blobs/sha256:..", 400, "DIGEST_INVALID"),
    ("/v2/serve/oci-single/blobs/sha256:" + "A" * 64, 400, "DIGEST_INVALID"),
    ("/v2/serve/oci-single/blobs/..", 400, "DIGEST_INVALID"),
    ("/v2/serve/oci-single/blobs/md5:" + "0" * 32, 400, "DIGEST_INVALID"),
    ("/v2/" + "a" * 300 + "/manifests/v1", 400, "NAME_INVALID"),
    ("/v2/" + "a/" * 600 + "manifests/v1", 400, "NAME_INVALID"),
    ("/v2/Serve/oci-single/manifests/v1", 400, "NAME_INVALID"),
    ("/v2/serve/oci-single/manifests/" + "t" * 129, 404, "MANIFEST_UNKNOWN"),
    ("/v2/serve/oci-single/referrers/index.json", 400, "DIGEST_INVALID"),
    ("/v2/.mirror/index.lock/manifests/v1", 400, "NAME_INVALID"),
    ("/v2/serve/oci-single/manifests/v1\\..\\x", 400, "NAME_INVALID"),
]


@pytest.mark.parametrize(("path", "status", "code"), HOSTILE)
async def test_a_hostile_path_is_refused_before_it_touches_a_file(
    sources: dict[str, Path], path: str, status: int, code: str
) -> None:
    with serving(f"oci:{sources['layout']}") as served:
        answer = await raw_request(served.host, "GET", path)
        assert (answer.status, answer.code) == (status, code)


async def test_a_blob_outside_the_sources_is_not_served(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    """A file whose digest is known but that no source holds (here: a layout's own
    index.json, and a blob of another layout beside it) is never read."""
    index = Digest.of((sources["layout"] / "index.json").read_bytes())
    with serving(f"oci:{sources['layout']}") as served:
        for digest in (index, fixture_digest("artifact")):
            answer = await raw_request(served.host, "GET", f"/v2/serve/oci-single/blobs/{digest}")
            assert (answer.status, answer.code) == (404, "BLOB_UNKNOWN")


async def test_a_read_only_server_answers_pushes_405_unsupported(
    sources: dict[str, Path],
) -> None:
    with serving(f"oci:{sources['layout']}") as served:
        for method, path in (
            ("POST", "/v2/serve/oci-single/blobs/uploads/"),
            ("PUT", "/v2/serve/oci-single/manifests/v2"),
            ("DELETE", f"/v2/serve/oci-single/manifests/{fixture_digest('oci-single')}"),
            ("PATCH", "/v2/serve/oci-single/blobs/uploads/x"),
        ):
            answer = await raw_request(served.host, method, path, {"Content-Length": "0"})
            assert (answer.status, answer.code) == (405, "UNSUPPORTED"), method


async def test_a_compressed_bundle_is_refused_in_one_line(tmp_path: Path) -> None:
    import zstandard

    packed = pack_layout(FIXTURES / "oci-single", tmp_path / "x.tar")
    zst = tmp_path / "x.tar.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(packed.read_bytes()))

    line = await serve_refused(str(zst))
    assert "cannot be served in place: decompress it once" in line


async def test_ctrl_c_ends_the_server_with_0_and_a_warning_goes_with_passwords_in_clear(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users"
    users.write_text("reader:$2y$04$d.8rHOYav6yu3vmk31GfXO7DJsDIB6OixLPnLBSUSqS6haAR.mMcO\n")
    served = start_serve(f"oci:{FIXTURES / 'oci-single'}")
    served.process.send_signal(signal.SIGINT)
    _, err = served.process.communicate(timeout=60)
    assert (served.process.returncode, err) == (0, "")
    loud = await amirror("serve", "--listen", "0.0.0.0:0", "--htpasswd", str(users), "nowhere.tar")
    assert "--htpasswd without --tls-cert: passwords cross the network in the clear" in loud.stderr


async def test_a_link_in_a_layout_is_never_followed(tmp_path: Path) -> None:
    """A blob file replaced by a link to a file outside the layout (named by that file's
    digest) is not served: the server reads regular files of its sources only."""
    outside = tmp_path / "secret"
    outside.write_bytes(b"not for the network\n")
    digest = Digest.of(outside.read_bytes())
    root = tmp_path / "layout"
    await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", f"oci:{root}:linked/app:v1")
    (root / "blobs" / "sha256" / digest.encoded).symlink_to(outside)
    with serving(f"oci:{root}") as served:
        for kind in ("blobs", "manifests"):
            answer = await raw_request(served.host, "GET", f"/v2/linked/app/{kind}/{digest}")
            assert answer.status == 404
            assert b"not for the network" not in answer.body
