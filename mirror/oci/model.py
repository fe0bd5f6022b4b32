"""Descriptors, image manifests and indexes as immutable values that keep their exact bytes."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mirror.errors import InvalidDigest, ManifestInvalid, UnsupportedMediaType
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.platform import Platform
from mirror.support import jsonutil

__all__ = ["Descriptor", "Index", "Manifest", "ManifestLike", "parse_manifest"]

_EMPTY: Mapping[str, str] = MappingProxyType({})
#: the largest size a descriptor can state (the image spec's sizes are int64)
MAX_SIZE = 2**63 - 1
# Content types some servers send for any JSON: they say nothing about the manifest kind.
_GENERIC_TYPES = frozenset({"application/json", "application/octet-stream", "text/plain", ""})


@dataclass(frozen=True)
class Descriptor:
    """Points at content by media type, digest and size (OCI content descriptor)."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: bytes | None = field(default=None, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", Digest(self.digest))
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ManifestInvalid(f"descriptor {self.digest}: size must be a non-negative integer")
        if self.size > MAX_SIZE:
            raise ManifestInvalid(f"descriptor {self.digest}: size does not fit a 64-bit integer")
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))

    @classmethod
    def from_json(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        """Parse and validate a descriptor JSON object; errors name `where`."""
        if not isinstance(obj, Mapping):
            raise ManifestInvalid(f"{where} must be a JSON object")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestInvalid(f"{where}: missing mediaType")
        if not isinstance(digest, str):
            raise ManifestInvalid(f"{where}: missing digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestInvalid(f"{where}: size must be a non-negative integer")
        if size > MAX_SIZE:
            raise ManifestInvalid(f"{where}: size {size} does not fit a 64-bit integer")
        try:
            checked = Digest(digest)
        except InvalidDigest as exc:
            raise InvalidDigest(f"{where}: {exc}") from None
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise ManifestInvalid(f"{where}: annotations must map strings to strings")
        urls = obj.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise ManifestInvalid(f"{where}: urls must be a list of strings")
        platform = obj.get("platform")
        artifact_type = obj.get("artifactType")
        data = obj.get("data")
        return cls(
            media_type=media_type,
            digest=checked,
            size=size,
            urls=tuple(urls),
            annotations=annotations,
            platform=Platform.from_json(platform) if platform is not None else None,
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
            data=_decode_data(data, where) if data is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object for this descriptor, in the spec's field order."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest)}
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @property
    def ref_name(self) -> str | None:
        """The `org.opencontainers.image.ref.name` annotation, if any."""
        return self.annotations.get("org.opencontainers.image.ref.name")

    @property
    def is_foreign(self) -> bool:
        """True for a non-distributable layer that names where to fetch it (`urls`): such a
        layer is not copied unless asked for, and may be absent from a layout."""
        return bool(self.urls) and self.media_type in mt.NON_DISTRIBUTABLE


def _decode_data(data: Any, where: str) -> bytes:
    if not isinstance(data, str):
        raise ManifestInvalid(f"{where}: data must be base64 text")
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ManifestInvalid(f"{where}: data is not valid base64") from None


@dataclass(frozen=True)
class _Parsed:
    raw: bytes = field(repr=False)
    media_type: str
    digest: Digest
    annotations: Mapping[str, str] = field(hash=False)
    subject: Descriptor | None
    artifact_type: str | None

    @property
    def size(self) -> int:
        """Length of the exact bytes."""
        return len(self.raw)

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor pointing at these exact bytes."""
        return Descriptor(self.media_type, self.digest, len(self.raw), **extra)


@dataclass(frozen=True)
class Manifest(_Parsed):
    """An image manifest (OCI or Docker v2 schema 2), including artifacts."""

    config: Descriptor
    layers: tuple[Descriptor, ...]

    def blobs(self) -> Iterator[Descriptor]:
        """Config then layers: every blob this manifest needs."""
        yield self.config
        yield from self.layers

    @property
    def children(self) -> tuple[Descriptor, ...]:
        """Everything this manifest points at, except its subject."""
        return (self.config, *self.layers)


@dataclass(frozen=True)
class Index(_Parsed):
    """An image index (OCI) or manifest list (Docker)."""

    manifests: tuple[Descriptor, ...]

    @property
    def children(self) -> tuple[Descriptor, ...]:
        """Everything this index points at, except its subject."""
        return self.manifests

    def find(self, platform: Platform) -> Descriptor | None:
        """The first child manifest whose platform matches `platform`."""
        for child in self.manifests:
            if child.platform is not None and platform.matches(child.platform):
                return child
        return None


ManifestLike = Manifest | Index


def parse_manifest(
    raw: bytes, media_type: str | None = None, *, digest: Digest | None = None
) -> ManifestLike:
    """Parse the exact bytes of a manifest or index; `media_type` is what the transport said.

    Raises ManifestInvalid (bad JSON, wrong shape, over 4 MiB, a mediaType that disagrees
    with `media_type`) or UnsupportedMediaType (schema 1, unknown kinds).
    `digest` is the digest under which the bytes are known (default: sha256 of `raw`).
    """
    if len(raw) > mt.MAX_MANIFEST_SIZE:
        raise ManifestInvalid(
            f"manifest is {len(raw)} bytes, over the {mt.MAX_MANIFEST_SIZE} byte limit"
        )
    try:
        obj = jsonutil.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    body_type = obj.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid("manifest mediaType must be a string")
    kind = _decide_kind(obj, body_type, media_type)
    if obj.get("schemaVersion") != 2:
        raise ManifestInvalid(f"{kind}: schemaVersion must be 2")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestInvalid(f"{kind}: annotations must be an object")
    subject = obj.get("subject")
    artifact_type = obj.get("artifactType")
    common: dict[str, Any] = {
        "raw": bytes(raw),
        "media_type": kind,
        "digest": digest or Digest.of(raw),
        "annotations": MappingProxyType(dict(annotations)),
        "subject": Descriptor.from_json(subject, "subject") if subject is not None else None,
        "artifact_type": artifact_type if isinstance(artifact_type, str) else None,
    }
    if kind in mt.INDEXES:
        children = obj.get("manifests")
        if not isinstance(children, list):
            raise ManifestInvalid(f"{kind}: 'manifests' must be a list")
        return Index(
            **common,
            manifests=tuple(
                Descriptor.from_json(c, f"manifests[{i}]") for i, c in enumerate(children)
            ),
        )
    layers = obj.get("layers")
    if layers is None and kind == mt.OCI_MANIFEST:
        layers = []
    if not isinstance(layers, list):
        raise ManifestInvalid(f"{kind}: 'layers' must be a list")
    return Manifest(
        **common,
        config=Descriptor.from_json(obj.get("config"), "config"),
        layers=tuple(Descriptor.from_json(x, f"layers[{i}]") for i, x in enumerate(layers)),
    )


def _decide_kind(obj: dict[str, Any], body_type: str | None, declared: str | None) -> str:
    for candidate in (declared, body_type):
        if candidate in mt.SCHEMA1:
            raise UnsupportedMediaType(f"Docker schema 1 manifests are not supported ({candidate})")
    if declared in _GENERIC_TYPES:
        declared = None
    if declared and body_type and declared != body_type:
        raise ManifestInvalid(
            f"manifest says mediaType {body_type!r} but was served as {declared!r}"
        )
    kind = body_type or declared
    if kind is None:
        # OCI allows an absent mediaType: infer it from the fields.
        if "manifests" in obj:
            return mt.OCI_INDEX
        if "config" in obj:
            return mt.OCI_MANIFEST
        if obj.get("schemaVersion") == 1:
            raise UnsupportedMediaType("Docker schema 1 manifests are not supported")
        raise ManifestInvalid("manifest has no mediaType and is neither a manifest nor an index")
    if kind not in mt.MANIFESTS:
        raise UnsupportedMediaType(f"unsupported manifest media type {kind!r}")
    return kind


def fallback_tag(subject: Digest | str) -> str:
    """The tag that lists the referrers of `subject` where a registry lacks the referrers
    API (distribution spec 1.1): `<alg>-<hex>`."""
    checked = Digest(subject)
    return f"{checked.algorithm}-{checked.encoded}"


def index_of(manifests: Iterable[Descriptor], media_type: str = mt.OCI_INDEX) -> Index:
    """A new index (compact JSON, always the same bytes for the same entries) listing
    `manifests` in the order given."""
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [d.to_json() for d in manifests],
    }
    made = parse_manifest(json.dumps(body, separators=(",", ":")).encode(), media_type)
    assert isinstance(made, Index)
    return made
