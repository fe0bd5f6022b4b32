"""Validation against the official OCI image-spec JSON schemas in ../shared/oci-schema."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.support.tools import SCHEMAS

# Every URL each schema file is known by (image-spec schema/schema.go).
_URLS = {
    "config-schema.json": ["https://opencontainers.org/schema/image/config"],
    "content-descriptor.json": [
        "https://opencontainers.org/schema/descriptor",
        "https://opencontainers.org/schema/image/content-descriptor.json",
    ],
    "defs-descriptor.json": [
        "https://opencontainers.org/schema/image/descriptor/mediaType",
        "https://opencontainers.org/schema/defs-descriptor.json",
        "https://opencontainers.org/schema/image/defs-descriptor.json",
    ],
    "defs.json": [
        "https://opencontainers.org/schema/defs.json",
        "https://opencontainers.org/schema/image/defs.json",
        "https://opencontainers.org/schema/image/descriptor/defs.json",
    ],
    "image-index-schema.json": ["https://opencontainers.org/schema/image/index"],
    "image-layout-schema.json": ["https://opencontainers.org/schema/image/layout"],
    "image-manifest-schema.json": ["https://opencontainers.org/schema/image/manifest"],
}

KINDS = {
    "layout": "image-layout-schema.json",
    "index": "image-index-schema.json",
    "manifest": "image-manifest-schema.json",
    "config": "config-schema.json",
}


@cache
def _validators() -> dict[str, Draft4Validator]:
    if not SCHEMAS.is_dir():
        raise RuntimeError(f"OCI schemas not found at {SCHEMAS}")
    registry: Registry = Registry()
    loaded = {}
    for name, urls in _URLS.items():
        doc = json.loads((SCHEMAS / name).read_text())
        loaded[name] = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT4)
        for url in urls:
            registry = registry.with_resource(url, resource)
    return {kind: Draft4Validator(loaded[f], registry=registry) for kind, f in KINDS.items()}


def validate(kind: str, document: bytes | Any) -> None:
    """Raise jsonschema.ValidationError unless `document` is a valid OCI `kind`."""
    obj = json.loads(document) if isinstance(document, bytes | str) else document
    _validators()[kind].validate(obj)
