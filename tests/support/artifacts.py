"""Artifacts shaped the way the ORAS client and cosign make them, pushed by test code.

- OCI 1.1 artifacts (`oras attach`): `artifactType` set, the empty config
  (`application/vnd.oci.empty.v1+json`, `{}`), a `subject` naming what they refer to;
- the ORAS 1.0 convention: no `artifactType`, the type carried by a custom config media type;
- cosign's signatures: an image manifest under the tag `sha256-<hex>.sig` next to the image;
- the fallback tag `sha256-<hex>` whose index lists the referrers of `sha256:<hex>`, as a client
  writes it for a registry without the referrers API (the distribution server).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mirror.endpoint import Endpoint, bytes_source
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, ManifestLike, fallback_tag, parse_manifest

EMPTY = "application/vnd.oci.empty.v1+json"
SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
ATTESTATION = "application/vnd.in-toto+json"
COSIGN_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass(frozen=True)
class Pushed:
    """A manifest pushed, and its descriptor as a referrers index lists it."""

    manifest: ManifestLike
    listed: Descriptor


async def _blob(endpoint: Endpoint, data: bytes, media_type: str) -> Descriptor:
    desc = Descriptor(media_type, Digest.of(data), len(data))
    await endpoint.blob_put(desc, bytes_source(data))
    return desc


async def attach(
    endpoint: Endpoint,
    subject: ManifestLike,
    payload: bytes,
    *,
    artifact_type: str,
    oras_1_0: bool = False,
) -> Pushed:
    """Push an artifact whose subject is `subject`: OCI 1.1 style (artifactType, empty config)
    or, with `oras_1_0`, the ORAS 1.0 convention (the type as the config's media type)."""
    layer = await _blob(endpoint, payload, "application/octet-stream")
    body: dict[str, object] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    if oras_1_0:
        config = await _blob(endpoint, b"{}", artifact_type)
    else:
        config = await _blob(endpoint, b"{}", EMPTY)
        body["artifactType"] = artifact_type
    body.update(
        config=config.to_json(),
        layers=[layer.to_json()],
        subject=subject.descriptor().to_json(),
        annotations={"org.opencontainers.image.created": "2026-11-28T00:00:00Z"},
    )
    manifest = parse_manifest(json.dumps(body).encode(), mt.OCI_MANIFEST)
    await endpoint.manifest_put(manifest)
    listed = Descriptor(
        mt.OCI_MANIFEST,
        manifest.digest,
        manifest.size,
        artifact_type=artifact_type,
        annotations={"org.opencontainers.image.created": "2026-11-28T00:00:00Z"},
    )
    return Pushed(manifest, listed)


async def list_by_fallback(
    endpoint: Endpoint, subject: ManifestLike, referrers: list[Pushed], name: str | None = None
) -> ManifestLike:
    """Write the fallback tag's index for `subject` listing `referrers` (as a client does for
    a registry without the referrers API); `name` overrides the tag (layouts: `repo:tag`)."""
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [r.listed.to_json() for r in referrers],
    }
    index = parse_manifest(json.dumps(body).encode(), mt.OCI_INDEX)
    await endpoint.image_put(index, name or fallback_tag(subject.digest))
    return index


async def cosign_signature(endpoint: Endpoint, subject: ManifestLike, note: bytes) -> ManifestLike:
    """Push a cosign-style signature image under the tag `sha256-<hex>.sig`."""
    layer = await _blob(endpoint, b'{"critical":' + note + b"}", COSIGN_SIMPLE_SIGNING)
    config_body = {  # what cosign writes: an empty platform, the signature as the one layer
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(layer.digest)]},
        "config": {},
    }
    config = await _blob(endpoint, json.dumps(config_body).encode(), mt.OCI_CONFIG)
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [
            {**layer.to_json(), "annotations": {"dev.cosignproject.cosign/signature": "MEUC"}}
        ],
    }
    manifest = parse_manifest(json.dumps(body).encode(), mt.OCI_MANIFEST)
    await endpoint.image_put(manifest, f"{fallback_tag(subject.digest)}.sig")
    return manifest
