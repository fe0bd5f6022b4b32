"""`mirror serve` with TLS from a private CA and basic auth from a bcrypt htpasswd file:
mirror and skopeo pull with the CA and the password; without them, 401 with a Basic
challenge; a file that is not bcrypt refused at start in one line."""

from __future__ import annotations

import base64
import shutil
import ssl
from pathlib import Path

import aiohttp
import bcrypt

from mirror.layout import Layout
from tests.support.certs import make_tls_files
from tests.support.serving import serve_refused, serving
from tests.support.tools import FIXTURES, amirror, fixture_digest, skopeo


def _htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd line as `htpasswd -B` writes it (Apache's `$2y$`)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"# users\n{user}:{hashed.replace('$2b$', '$2y$', 1)}\n")
    return path


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_tls_and_htpasswd_admit_mirror_and_skopeo_with_the_password(
    tmp_path: Path,
) -> None:
    ca, cert, key = make_tls_files(tmp_path / "tls")
    users = _htpasswd(tmp_path / "htpasswd", "reader", "s3cret pass")
    cert_dir = tmp_path / "certs.d"
    cert_dir.mkdir()
    shutil.copy(ca, cert_dir / "ca.crt")
    with serving(
        "--repository",
        "app",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--htpasswd",
        str(users),
        f"oci:{FIXTURES / 'multi-arch'}",
    ) as served:
        assert served.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(ca))
        async with aiohttp.ClientSession(served.url) as http:
            bare = await http.get("/v2/", ssl=trusted)
            assert bare.status == 401
            assert bare.headers["WWW-Authenticate"] == 'Basic realm="mirror serve"'
            assert (await bare.json())["errors"][0]["code"] == "UNAUTHORIZED"
            wrong = await http.get(
                "/v2/app/tags/list", ssl=trusted, headers=_basic("reader", "nope")
            )
            assert wrong.status == 401
            right = await http.get(
                "/v2/app/tags/list", ssl=trusted, headers=_basic("reader", "s3cret pass")
            )
            assert (await right.json())["tags"] == ["v1"]
        into = tmp_path / "pulled"
        pulled = await amirror(
            "--ca-file",
            str(ca),
            "--creds",
            "reader:s3cret pass",
            "copy",
            f"docker://{served.host}/app:v1",
            f"oci:{into}:v1",
        )
        assert pulled.returncode == 0, pulled.stderr
        async with await Layout.open(into) as layout:
            assert str((await layout.resolve("v1")).digest) == fixture_digest("multi-arch")
        skopeo(
            "copy",
            "--all",
            "--src-cert-dir",
            str(cert_dir),
            "--src-creds",
            "reader:s3cret pass",
            f"docker://{served.host}/app:v1",
            f"oci:{tmp_path / 'skopeo'}:v1",
        )
        refused = await amirror(
            "--ca-file", str(ca), "copy", f"docker://{served.host}/app:v1", f"oci:{into}:x"
        )
        assert refused.returncode == 1
        untrusted = await amirror("copy", f"docker://{served.host}/app:v1", f"oci:{into}:y")
        assert untrusted.returncode == 1
        assert "--ca-file" in untrusted.stderr


async def test_an_htpasswd_file_that_is_not_bcrypt_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    users = tmp_path / "htpasswd"
    users.write_text("reader:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")
    line = await serve_refused("--htpasswd", str(users), f"oci:{FIXTURES / 'oci-single'}")
    assert line == (
        f"mirror: error: --htpasswd {users} line 1: not a bcrypt entry (make it with htpasswd -B)"
    )
