"""What the image spec requires, as `mirror layout verify --strict` checks it: each rule is
shown to fail on a document that breaks it, and the spec's own examples pass."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mirror.layout.conformance import check_document

DIGEST = "sha256:" + "a" * 64
DESCRIPTOR = {
    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
    "digest": DIGEST,
    "size": 1,
}
MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {**DESCRIPTOR, "mediaType": "application/vnd.oci.image.config.v1+json"},
    "layers": [DESCRIPTOR],
    "annotations": {"com.example.key": "value"},
}
INDEX: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {
            **DESCRIPTOR,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            "annotations": {"org.opencontainers.image.ref.name": "v1.0"},
        }
    ],
}
CONFIG: dict[str, Any] = {
    "created": "2015-10-31T22:22:56.015925234Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"a": "b"}},
    "rootfs": {"type": "layers", "diff_ids": [DIGEST]},
    "history": [{"created_by": "/bin/sh -c #(nop) ADD file", "empty_layer": False}],
}


def test_the_specs_examples_conform() -> None:
    assert check_document("manifest", MANIFEST) == []
    assert check_document("index", INDEX) == []
    assert check_document("layout-index", INDEX) == []
    assert check_document("config", CONFIG) == []
    assert check_document("layout", {"imageLayoutVersion": "1.0.0"}) == []
    artifact = {
        **MANIFEST,
        "artifactType": "application/vnd.example+type",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
            "data": "e30=",
        },
        "subject": INDEX["manifests"][0],
    }
    assert check_document("manifest", artifact) == []


def _broken(base: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("kind", "base", "path", "value", "says"),
    [
        ("manifest", MANIFEST, ["schemaVersion"], 1, "schemaVersion"),
        (
            "manifest",
            MANIFEST,
            ["mediaType"],
            "application/vnd.oci.image.index.v1+json",
            "mediaType",
        ),
        ("manifest", MANIFEST, ["config"], KeyError, "config: required"),
        ("manifest", MANIFEST, ["layers"], KeyError, "layers: required"),
        ("manifest", MANIFEST, ["layers", 0, "digest"], "sha256:ABC", "layers[0].digest"),
        ("manifest", MANIFEST, ["layers", 0, "digest"], "md5", "not a digest"),
        ("manifest", MANIFEST, ["layers", 0, "size"], -1, "layers[0].size"),
        ("manifest", MANIFEST, ["layers", 0, "size"], 2**63, "64-bit"),
        ("manifest", MANIFEST, ["layers", 0, "size"], True, "layers[0].size"),
        ("manifest", MANIFEST, ["layers", 0, "mediaType"], "not a type", "media type"),
        ("manifest", MANIFEST, ["layers", 0, "urls"], ["ok", 3], "urls"),
        ("manifest", MANIFEST, ["layers", 0, "data"], "not base64!", "base64"),
        ("manifest", MANIFEST, ["annotations"], {"k": 1}, "annotations"),
        (
            "manifest",
            MANIFEST,
            ["config", "mediaType"],
            "application/vnd.oci.empty.v1+json",
            "artifactType",
        ),
        ("index", INDEX, ["manifests"], KeyError, "manifests: required"),
        ("index", INDEX, ["manifests", 0, "platform", "os"], KeyError, "platform.os"),
        ("index", INDEX, ["manifests", 0, "platform", "os.features"], "x", "os.features"),
        (
            "layout-index",
            INDEX,
            ["manifests", 0, "annotations"],
            {"org.opencontainers.image.ref.name": "a//b"},
            "not a valid name",
        ),
        ("config", CONFIG, ["architecture"], KeyError, "architecture: required"),
        ("config", CONFIG, ["os"], 3, "os: must be a string"),
        ("config", CONFIG, ["rootfs", "type"], "tar", "rootfs.type"),
        ("config", CONFIG, ["rootfs", "diff_ids", 0], "nope", "diff_ids[0]"),
        ("config", CONFIG, ["created"], "yesterday", "RFC 3339"),
        ("config", CONFIG, ["config", "Env"], "PATH=/bin", "config.Env"),
        ("config", CONFIG, ["history", 0, "empty_layer"], "no", "empty_layer"),
        (
            "layout",
            {"imageLayoutVersion": "1.0.0"},
            ["imageLayoutVersion"],
            "2.0",
            "imageLayoutVersion",
        ),
    ],
)
def test_each_rule_can_fail(
    kind: str, base: dict[str, Any], path: list[str | int], value: Any, says: str
) -> None:
    problems = check_document(kind, _broken(base, path, value))
    assert len(problems) == 1, problems
    assert says in problems[0]


def test_a_document_that_is_not_an_object() -> None:
    assert check_document("index", [1, 2]) == ["the document must be a JSON object"]
