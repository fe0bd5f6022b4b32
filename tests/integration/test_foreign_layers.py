"""Non-distributable (foreign) layers are not pushed unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import mirror
from mirror.layout import Layout
from mirror.oci import mediatypes as mt
from mirror.oci.model import parse_manifest
from mirror.registry import RegistryOptions
from tests.support.registry import start_registry

# distribution refuses manifests naming foreign URLs unless told which are allowed
ALLOW_URLS = "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n"


async def _layout_with_foreign_layer(root: Path) -> None:
    async with await Layout.open(root, create=True) as layout:
        layer = await layout.blob_put_bytes(b"foreign layer bytes", mt.DOCKER_LAYER_FOREIGN)
        config = await layout.blob_put_bytes(
            json.dumps({"architecture": "amd64", "os": "windows"}).encode(), mt.DOCKER_CONFIG
        )
        foreign = {**layer.to_json(), "urls": ["https://example.invalid/layer.tar.gz"]}
        body = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": config.to_json(),
            "layers": [foreign],
        }
        await layout.image_put(parse_manifest(json.dumps(body).encode()), "win")


async def test_foreign_layers_are_skipped_unless_asked(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "reg", extra=ALLOW_URLS)
    try:
        await _layout_with_foreign_layer(tmp_path / "l")
        source = f"oci:{tmp_path / 'l'}:win"
        # no blob locations remembered by other tests' runs: every blob is sent
        streamed = RegistryOptions(blob_cache=False)
        skipped = await mirror.copy(
            source, f"docker://{registry.host}/foreign/skip:v1", options=streamed
        )
        assert skipped.blobs_copied == 1  # the config only
        included = await mirror.copy(
            source,
            f"docker://{registry.host}/foreign/include:v1",
            include_foreign=True,
            options=streamed,
        )
        assert included.blobs_copied == 2
    finally:
        registry.stop()
