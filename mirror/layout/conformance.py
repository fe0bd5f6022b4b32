"""What the OCI image spec requires of a layout's documents, checked by our own code.

Written from the image-spec's text (v1.1: descriptor.md, image-index.md, manifest.md,
config.md, image-layout.md, annotations.md). `check_document` names every flaw of one
document; `layout verify --strict` runs it over `oci-layout`, `index.json` and every
manifest, index and image config an image reaches. Docker schema 2 documents, which layouts
may also hold, are held to the same shape with Docker's media types.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from mirror.oci import mediatypes as mt

__all__ = ["KINDS", "check_document", "kind_of"]

# descriptor.md: media types follow RFC 6838 (the image-spec schema's pattern)
_MEDIA_TYPE: Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
# descriptor.md, "Digests": algorithm ":" encoded
_DIGEST: Final = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# registered algorithms and their encoded forms
_REGISTERED: Final = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
_INT64_MAX: Final = 2**63 - 1
# annotations.md: ref.name = component ("/" component)*, component = alphanum (separator alphanum)*
_REF_NAME: Final = re.compile(
    r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*"
)

Problems = list[str]


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _string(obj: Mapping[str, Any], key: str, path: str, out: Problems, *, required: bool) -> None:
    if key not in obj:
        if required:
            out.append(f"{_at(path, key)}: required")
        return
    if not isinstance(obj[key], str):
        out.append(f"{_at(path, key)}: must be a string")


def _strings(obj: Mapping[str, Any], key: str, path: str, out: Problems) -> None:
    value = obj.get(key)
    if key in obj and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        out.append(f"{_at(path, key)}: must be an array of strings")


def _string_map(obj: Mapping[str, Any], key: str, path: str, out: Problems) -> None:
    value = obj.get(key)
    if key in obj and (
        not isinstance(value, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        out.append(f"{_at(path, key)}: must map strings to strings")


def _media_type(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, str) or not _MEDIA_TYPE.fullmatch(value):
        out.append(f"{path}: not a media type (RFC 6838)")


def _digest(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        out.append(f"{path}: not a digest (algorithm:encoded)")
        return
    algorithm, _, encoded = value.partition(":")
    pattern = _REGISTERED.get(algorithm)
    if pattern is not None and not pattern.fullmatch(encoded):
        out.append(f"{path}: not a {algorithm} digest (lower-case hex of the right length)")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64_MAX


def _platform(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, dict):
        out.append(f"{path}: must be an object")
        return
    _string(value, "architecture", path, out, required=True)
    _string(value, "os", path, out, required=True)
    _string(value, "os.version", path, out, required=False)
    _strings(value, "os.features", path, out)
    _string(value, "variant", path, out, required=False)
    _strings(value, "features", path, out)


def _annotations(obj: Mapping[str, Any], path: str, out: Problems) -> None:
    _string_map(obj, "annotations", path, out)


def descriptor(value: Any, path: str, out: Problems) -> None:
    """descriptor.md: mediaType, digest and size required; urls, annotations, data,
    artifactType and (in an index) platform typed as the spec says."""
    if not isinstance(value, dict):
        out.append(f"{path}: a descriptor must be an object")
        return
    for key in ("mediaType", "digest", "size"):
        if key not in value:
            out.append(f"{_at(path, key)}: required")
    if "mediaType" in value:
        _media_type(value["mediaType"], _at(path, "mediaType"), out)
    if "digest" in value:
        _digest(value["digest"], _at(path, "digest"), out)
    size = value.get("size")
    if "size" in value and not _size(size):
        out.append(f"{_at(path, 'size')}: must be a non-negative 64-bit integer")
    _strings(value, "urls", path, out)
    _annotations(value, path, out)
    if "data" in value:
        try:
            base64.b64decode(value["data"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            out.append(f"{_at(path, 'data')}: must be base64")
    if "artifactType" in value:
        _media_type(value["artifactType"], _at(path, "artifactType"), out)
    if "platform" in value:
        _platform(value["platform"], _at(path, "platform"), out)


def _common(obj: dict[str, Any], media_types: frozenset[str], out: Problems) -> None:
    """schemaVersion 2 and, when given, the document's own media type."""
    if obj.get("schemaVersion") != 2 or not _integer(obj.get("schemaVersion")):
        out.append("schemaVersion: required, and must be 2")
    if "mediaType" in obj and obj["mediaType"] not in media_types:
        out.append(f"mediaType: must be one of {', '.join(sorted(media_types))}")
    if "artifactType" in obj:
        _media_type(obj["artifactType"], "artifactType", out)
    if "subject" in obj:
        descriptor(obj["subject"], "subject", out)
    _annotations(obj, "", out)


def _descriptors(obj: dict[str, Any], key: str, out: Problems) -> None:
    """A required array of descriptors under `key`."""
    entries = obj.get(key)
    if not isinstance(entries, list):
        out.append(f"{key}: required, an array of descriptors")
        return
    for i, entry in enumerate(entries):
        descriptor(entry, f"{key}[{i}]", out)


def _index(obj: dict[str, Any], out: Problems) -> None:
    """image-index.md."""
    _common(obj, frozenset({mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST}), out)
    _descriptors(obj, "manifests", out)


def _manifest(obj: dict[str, Any], out: Problems) -> None:
    """manifest.md."""
    _common(obj, frozenset({mt.OCI_MANIFEST, mt.DOCKER_MANIFEST}), out)
    if "config" not in obj:
        out.append("config: required")
    else:
        descriptor(obj["config"], "config", out)
        config = obj["config"]
        empty = isinstance(config, dict) and config.get("mediaType") == mt.OCI_EMPTY
        if empty and "artifactType" not in obj:
            out.append("artifactType: required when config.mediaType is the empty type")
    _descriptors(obj, "layers", out)


def _config(obj: dict[str, Any], out: Problems) -> None:
    """config.md: architecture, os and rootfs (type "layers", diff_ids) required."""
    for key in ("architecture", "os"):
        _string(obj, key, "", out, required=True)
    for key in ("created", "author", "os.version", "variant"):
        _string(obj, key, "", out, required=False)
    _strings(obj, "os.features", "", out)
    created = obj.get("created")
    if isinstance(created, str) and not _rfc3339(created):
        out.append("created: must be an RFC 3339 date-time")
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict):
        out.append("rootfs: required, an object")
    else:
        if rootfs.get("type") != "layers":
            out.append('rootfs.type: required, and must be "layers"')
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list):
            out.append("rootfs.diff_ids: required, an array of digests")
        else:
            for i, diff_id in enumerate(diff_ids):
                _digest(diff_id, f"rootfs.diff_ids[{i}]", out)
    if "config" in obj:
        _execution(obj["config"], out)
    history = obj.get("history")
    if "history" in obj and not isinstance(history, list):
        out.append("history: must be an array")
    for i, entry in enumerate(history if isinstance(history, list) else []):
        where = f"history[{i}]"
        if not isinstance(entry, dict):
            out.append(f"{where}: must be an object")
            continue
        for key in ("created", "author", "created_by", "comment"):
            _string(entry, key, where, out, required=False)
        if "empty_layer" in entry and not isinstance(entry["empty_layer"], bool):
            out.append(f"{where}.empty_layer: must be a boolean")


def _execution(value: Any, out: Problems) -> None:
    """config.md, the `config` object: typed fields where they are present."""
    if value is None:
        return
    if not isinstance(value, dict):
        out.append("config: must be an object")
        return
    for key in ("User", "WorkingDir", "StopSignal"):
        _string(value, key, "config", out, required=False)
    for key in ("Env", "Entrypoint", "Cmd"):
        if value.get(key) is not None:
            _strings(value, key, "config", out)
    for key in ("ExposedPorts", "Volumes"):
        if value.get(key) is not None and not isinstance(value[key], dict):
            out.append(f"config.{key}: must be an object")
    if value.get("Labels") is not None:
        _string_map(value, "Labels", "config", out)
    if "ArgsEscaped" in value and not isinstance(value["ArgsEscaped"], bool):
        out.append("config.ArgsEscaped: must be a boolean")


def _rfc3339(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in text.upper()


def _layout(obj: dict[str, Any], out: Problems) -> None:
    """image-layout.md, the `oci-layout` file."""
    if obj.get("imageLayoutVersion") != "1.0.0":
        out.append('imageLayoutVersion: required, and must be "1.0.0"')


def _layout_index(obj: dict[str, Any], out: Problems) -> None:
    """image-layout.md, `index.json`: an image index whose names are valid ref names."""
    _index(obj, out)
    for i, entry in enumerate(obj.get("manifests") or []):
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
        if isinstance(name, str) and not _REF_NAME.fullmatch(name):
            out.append(f"manifests[{i}].annotations: {REF_NAME} {name!r} is not a valid name")


REF_NAME: Final = "org.opencontainers.image.ref.name"

#: the documents `check_document` knows, by kind
KINDS: Final[dict[str, Callable[[dict[str, Any], Problems], None]]] = {
    "layout": _layout,
    "layout-index": _layout_index,
    "index": _index,
    "manifest": _manifest,
    "config": _config,
}


def kind_of(media_type: str) -> str | None:
    """The document kind a media type names, or None when the spec says nothing of it."""
    if media_type in mt.INDEXES:
        return "index"
    if media_type in mt.IMAGE_MANIFESTS:
        return "manifest"
    if media_type in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
        return "config"
    return None


def check_document(kind: str, obj: Any) -> list[str]:
    """Every way `obj` (parsed JSON) fails what the image spec requires of a `kind`
    document (see KINDS); [] when it conforms."""
    if not isinstance(obj, dict):
        return ["the document must be a JSON object"]
    out: Problems = []
    KINDS[kind](obj, out)
    return out
