"""Benchmark data shaped like what registries hold (issue 17): gzip layers pushed by a
docker-like client (skopeo, converting to Docker v2 manifests), and an image built by umoci
from real files — text, binaries and small files — all taken from inside the checkout (the
virtual environment's installed packages and the project's own sources).

    gzip_image(root, ref, layers, size)   random files in gzip layers (as already-compressed
                                          content is: gzip cannot shrink it)
    real_files_image(root, ref, work)     5 gzip layers made by `umoci insert`
    push_like_docker(layout, ref, target) skopeo copy --format v2s2 into a registry

(Many tags sharing blobs, for the growth case, come from tests/support/tags.py.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

from fixtures.generate import LayoutWriter, random_chunks
from tests.support.tags import tar_of_one_file
from tests.support.tools import REPO, require

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _gzip_layer(writer: LayoutWriter, seed: int, size: int) -> tuple[dict[str, object], str]:
    """One layer (a tar of `size` random bytes) gzip-compressed; its descriptor and diff_id."""
    diff = hashlib.sha256()
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)

    def compressed() -> Iterator[bytes]:
        for chunk in tar_of_one_file(f"data/{seed}.bin", random_chunks(seed, size), size):
            diff.update(chunk)
            if out := deflate.compress(chunk):
                yield out
        yield deflate.flush()

    desc = writer.stream_blob(compressed(), OCI_LAYER_GZIP)
    return desc, f"sha256:{diff.hexdigest()}"


def gzip_image(root: Path, ref: str, layers: int, layer_size: int, seed: int = 1) -> None:
    """A layout with one image of `layers` gzip layers, each a tar of one random file."""
    writer = LayoutWriter(root)
    made = [_gzip_layer(writer, seed * 1000 + i, layer_size) for i in range(layers)]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in made]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": writer.json_blob(config, OCI_CONFIG),
        "layers": [desc for desc, _ in made],
    }
    writer.name(writer.json_blob(manifest, OCI_MANIFEST), ref)
    writer.close()


def _site_packages() -> Path:
    found = sorted((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    if not found:
        raise SystemExit("no .venv site-packages: run `make venv` first")
    return found[0]


def real_files_image(root: Path, ref: str, work: Path) -> list[int]:
    """An image of 5 gzip layers built by `umoci insert` from real files of the checkout: the
    project's sources, the virtual environment's scripts, its installed packages (text and
    compiled binaries), and a large layer of four more copies of them. The layer sizes."""
    umoci = require("umoci")
    site = _site_packages()
    app = work / "app"
    for part in ("mirror", "tests", "docs", "fixtures"):
        shutil.copytree(REPO / part, app / part, ignore=shutil.ignore_patterns("__pycache__"))
    big = work / "big"
    for copy in ("a", "b", "c", "d"):
        shutil.copytree(site, big / copy, symlinks=True)
    subprocess.run([umoci, "init", "--layout", str(root)], check=True)
    subprocess.run([umoci, "new", "--image", f"{root}:{ref}"], check=True)
    for source, target in (
        (REPO / ".venv" / "bin", "/usr/local/bin"),
        (app, "/srv/app"),
        (site, "/usr/lib/python3/site-packages"),
        (big, "/opt/venvs"),
        (REPO / "docs", "/usr/share/doc/mirror"),
    ):
        subprocess.run(
            [umoci, "insert", "--rootless", "--image", f"{root}:{ref}", str(source), target],
            check=True,
            capture_output=True,
        )
    shutil.rmtree(app)
    shutil.rmtree(big)
    index = json.loads((root / "index.json").read_bytes())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((root / "blobs" / "sha256" / digest).read_bytes())
    return [int(layer["size"]) for layer in manifest["layers"]]


def push_like_docker(layout: Path, ref: str, target: str) -> None:
    """Push as docker does: Docker v2 manifests, gzip layers (skopeo converts OCI's)."""
    subprocess.run(
        [require("skopeo"), "--insecure-policy", "copy", "--quiet", "--format", "v2s2",
         "--dest-tls-verify=false", f"oci:{layout}:{ref}", f"docker://{target}"],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(real_files_image(target, "real", target.parent / "real-work"))
