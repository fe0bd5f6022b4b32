"""Manifests and indexes keep their exact bytes and are parsed strictly."""

from __future__ import annotations

import json

import pytest

from mirror.errors import InvalidDigest, ManifestInvalid, UnsupportedMediaType
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, Manifest, parse_manifest
from mirror.oci.platform import Platform
from tests.support.tools import FIXTURES

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _manifest(**extra: object) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 20}],
        **extra,
    }
    # deliberately odd spacing: the bytes must be kept as they are
    return json.dumps(body, indent=3).encode()


def test_manifest_keeps_exact_bytes_and_digest() -> None:
    raw = _manifest()
    m = parse_manifest(raw, mt.OCI_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.raw == raw
    assert m.digest == Digest.of(raw)
    assert m.size == len(raw)
    assert [d.digest for d in m.children] == [D1, D2]
    assert m.descriptor() == Descriptor(mt.OCI_MANIFEST, m.digest, len(raw))


def test_artifact_with_empty_config_and_subject() -> None:
    raw = _manifest(
        artifactType="application/vnd.example+type",
        subject={"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 3},
        config={"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_DIGEST, "size": 2},
    )
    m = parse_manifest(raw)
    assert isinstance(m, Manifest)
    assert m.artifact_type == "application/vnd.example+type"
    assert m.subject is not None
    assert m.subject.digest == D1
    assert m.config.digest == Digest.of(mt.EMPTY_JSON)


def test_index_and_platform_lookup() -> None:
    raw = (FIXTURES / "multi-arch" / "index.json").read_bytes()
    entry = json.loads(raw)["manifests"][0]
    index_bytes = (FIXTURES / "multi-arch" / "blobs" / "sha256" / entry["digest"][7:]).read_bytes()
    index = parse_manifest(index_bytes, mt.OCI_INDEX)
    assert isinstance(index, Index)
    arm = index.find(Platform.parse("linux/arm64"))
    assert arm is not None
    assert arm.platform == Platform("linux", "arm64", "v8")
    assert index.find(Platform.parse("linux/s390x")) is None


def test_docker_v2_manifest() -> None:
    entry = json.loads((FIXTURES / "docker-v2" / "index.json").read_bytes())["manifests"][0]
    raw = (FIXTURES / "docker-v2" / "blobs" / "sha256" / entry["digest"][7:]).read_bytes()
    m = parse_manifest(raw, mt.DOCKER_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.config.media_type == mt.DOCKER_CONFIG
    assert m.layers[0].media_type == mt.DOCKER_LAYER_GZIP


def test_media_type_is_inferred_when_absent() -> None:
    raw = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert parse_manifest(raw).media_type == mt.OCI_INDEX


def test_foreign_layers_are_non_distributable() -> None:
    d = Descriptor.from_json(
        {"mediaType": mt.DOCKER_LAYER_FOREIGN, "digest": D1, "size": 5, "urls": ["https://x"]}
    )
    assert d.is_foreign
    assert d.urls == ("https://x",)


@pytest.mark.parametrize(
    ("raw", "declared", "error", "says"),
    [
        (b"{not json", None, ManifestInvalid, "not valid JSON"),
        (b"[]", None, ManifestInvalid, "JSON object"),
        (_manifest(), mt.OCI_INDEX, ManifestInvalid, "served as"),
        (_manifest(schemaVersion=1), None, ManifestInvalid, "schemaVersion"),
        (b'{"schemaVersion":1,"fsLayers":[]}', None, UnsupportedMediaType, "schema 1"),
        (b"{}", mt.DOCKER_SCHEMA1_SIGNED, UnsupportedMediaType, "schema 1"),
        (_manifest(mediaType="application/x-odd"), None, UnsupportedMediaType, "x-odd"),
        (
            _manifest(layers=[{"mediaType": "x", "digest": "sha256:../../x", "size": 1}]),
            None,
            InvalidDigest,
            "layers[0]",
        ),
        (
            _manifest(config={"mediaType": "x", "digest": D1, "size": -1}),
            None,
            ManifestInvalid,
            "size",
        ),
        (b" " * (mt.MAX_MANIFEST_SIZE + 1), None, ManifestInvalid, "limit"),
    ],
)
def test_bad_manifests(raw: bytes, declared: str | None, error: type[Exception], says: str) -> None:
    with pytest.raises(error) as info:
        parse_manifest(raw, declared)
    assert says in str(info.value)


def test_descriptor_round_trip_keeps_everything() -> None:
    obj = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": D1,
        "size": 7,
        "annotations": {"a": "b"},
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "artifactType": "application/x",
    }
    assert Descriptor.from_json(obj).to_json() == obj
