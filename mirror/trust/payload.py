"""cosign's simple-signing payload, read as strictly as containers/image reads it
(signature/internal/sigstore_payload.go):

    {"critical": {"identity": {"docker-reference": "host/repo"},
                  "image": {"docker-manifest-digest": "sha256:…"},
                  "type": "cosign container image signature"},
     "optional": {…}}

Exactly these fields in `critical` (an unknown one, a duplicate key, JSON nested deeper than
a payload needs: refused); `optional` is free-form but bounded like the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mirror.support.jsonutil import DuplicateKey, no_duplicate_keys

__all__ = [
    "COSIGN_TYPE",
    "IN_TOTO",
    "MAX_DEPTH",
    "SIGN_PREDICATE",
    "BadPayload",
    "Payload",
    "parse_payload",
    "parse_statement",
    "strict_json",
]

COSIGN_TYPE = "cosign container image signature"
#: cosign 3's image signature: a DSSE envelope of an in-toto statement of this predicate
IN_TOTO = "application/vnd.in-toto+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
_STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
#: the deepest nesting of JSON a signature's payload, bundle or Rekor entry may have
MAX_DEPTH = 16


class BadPayload(ValueError):
    """A payload that is not cosign's simple signing; the message says why."""


@dataclass(frozen=True)
class Payload:
    """What a signature's payload claims: the manifest digest and the identity signed."""

    digest: str
    identity: str


def _depth(text: bytes) -> int:
    """The deepest nesting of `[`/`{` in JSON text, strings skipped (before parsing it)."""
    deepest = depth = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def strict_json(text: bytes, what: str) -> Any:
    """JSON from a signature: no duplicate key, nested at most MAX_DEPTH (BadPayload)."""
    if _depth(text) > MAX_DEPTH:
        raise BadPayload(f"{what} is JSON nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=no_duplicate_keys)
    except DuplicateKey as exc:
        raise BadPayload(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise BadPayload(f"{what} is not valid JSON ({exc})") from None


def _exact(obj: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise BadPayload(f"payload {where} is not an object")
    if set(obj) != keys:
        raise BadPayload(f"payload {where} has fields {sorted(obj)}, expected {sorted(keys)}")
    return obj


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise BadPayload(f"payload {where}.{key} is not a string")
    return value


def parse_payload(text: bytes) -> Payload:
    """The digest and identity a simple-signing payload names (BadPayload when it is not
    one: another `critical.type`, a missing or extra field)."""
    doc = strict_json(text, "payload")
    if not isinstance(doc, dict) or "critical" not in doc or set(doc) - {"critical", "optional"}:
        raise BadPayload("payload is not cosign's simple signing (critical, optional)")
    critical = _exact(doc["critical"], {"type", "image", "identity"}, "critical")
    kind = _string(critical, "type", "critical")
    if kind != COSIGN_TYPE:
        raise BadPayload(f"payload critical.type is {kind!r}, not {COSIGN_TYPE!r}")
    image = _exact(critical["image"], {"docker-manifest-digest"}, "critical.image")
    identity = _exact(critical["identity"], {"docker-reference"}, "critical.identity")
    optional = doc.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise BadPayload("payload optional is not an object")
    return Payload(
        _string(image, "docker-manifest-digest", "critical.image"),
        _string(identity, "docker-reference", "critical.identity"),
    )


def parse_statement(text: bytes) -> Payload:
    """The digest and identity of cosign 3's image-signature statement (BadPayload)."""
    doc = strict_json(text, "the statement")
    if not isinstance(doc, dict) or doc.get("_type") not in _STATEMENT_TYPES:
        raise BadPayload("the bundle's payload is not an in-toto statement")
    if doc.get("predicateType") != SIGN_PREDICATE:
        raise BadPayload(f"the statement's predicateType is not {SIGN_PREDICATE}")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise BadPayload("the statement does not name exactly one subject")
    (subject,) = subjects
    digests = subject.get("digest")
    if not isinstance(digests, dict) or not isinstance(digests.get("sha256"), str):
        raise BadPayload("the statement's subject has no sha256 digest")
    name = subject.get("name", "")
    if not isinstance(name, str):
        raise BadPayload("the statement's subject name is not a string")
    return Payload(f"sha256:{digests['sha256']}", name)
