"""A Rekor signed entry timestamp (SET), checked offline as containers/image checks it
(signature/internal/rekor_set.go): the SET is an ECDSA signature by a Rekor key over the
canonical JSON (RFC 8785) of `{body, integratedTime, logID, logIndex}`; the body is a
`hashedrekord` 0.0.1 entry naming the same signature, key or certificate, and payload hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mirror.trust.payload import BadPayload, strict_json

__all__ = ["BadEntry", "canonical_json", "decode_b64", "pem_block", "verify_set"]

#: the largest base64 text decoded from a signature (a signature, a body, a certificate)
MAX_B64 = 256 * 1024


class BadEntry(ValueError):
    """A Rekor entry that does not hold; the message says why."""


def decode_b64(text: object, what: str) -> bytes:
    """Strict standard base64 of at most MAX_B64 characters (BadEntry naming `what`)."""
    if not isinstance(text, str):
        raise BadEntry(f"{what} is not a base64 string")
    if len(text) > MAX_B64:
        raise BadEntry(f"{what} is over {MAX_B64} characters")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadEntry(f"{what} is not valid base64") from None


def canonical_json(value: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of an object of strings and integers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pem_block(text: bytes) -> tuple[str, bytes]:
    """The type and DER bytes of the one PEM block in `text` (BadEntry otherwise)."""
    lines = text.strip().splitlines()
    if len(lines) < 2 or not lines[0].startswith(b"-----BEGIN ") or not lines[0].endswith(b"-----"):
        raise BadEntry("not one PEM block")
    kind = lines[0][len(b"-----BEGIN ") : -5]
    if lines[-1] != b"-----END " + kind + b"-----":
        raise BadEntry("not one PEM block")
    try:
        der = base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise BadEntry("PEM with bad base64") from None
    return kind.decode("ascii", "replace"), der


def _exact(obj: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise BadEntry(f"{what} does not have exactly the fields {sorted(keys)}")
    return obj


def _parse(text: bytes, what: str) -> Any:
    try:
        return strict_json(text, what)
    except BadPayload as exc:
        raise BadEntry(str(exc)) from None


def verify_set(
    rekor_keys: Sequence[ec.EllipticCurvePublicKey],
    bundle: bytes,
    key_or_cert_pem: bytes,
    signature: bytes,
    payload: bytes,
) -> int:
    """Check cosign's `dev.sigstore.cosign/bundle` annotation `bundle` for the signature
    `signature` of `payload` by `key_or_cert_pem`; the entry's integrated time (Unix
    seconds). BadEntry naming what does not hold."""
    doc = _exact(_parse(bundle, "Rekor bundle"), {"SignedEntryTimestamp", "Payload"}, "bundle")
    entry = _exact(
        doc["Payload"], {"body", "integratedTime", "logIndex", "logID"}, "Rekor bundle Payload"
    )
    set_bytes = decode_b64(doc["SignedEntryTimestamp"], "SignedEntryTimestamp")
    return check_entry(rekor_keys, entry, set_bytes, key_or_cert_pem, signature, payload)


def check_entry(
    rekor_keys: Sequence[ec.EllipticCurvePublicKey],
    entry: dict[str, Any],
    set_bytes: bytes,
    key_or_cert_pem: bytes,
    signature: bytes,
    payload: bytes,
    *,
    dsse: bool = False,
) -> int:
    """Check a Rekor entry (`body`, `integratedTime`, `logIndex`, `logID`) and its SET (a
    `hashedrekord` of the payload, or with `dsse` a `dsse` entry of the envelope's payload);
    the integrated time."""
    for key in ("integratedTime", "logIndex"):
        if not isinstance(entry[key], int) or isinstance(entry[key], bool):
            raise BadEntry(f"Rekor entry {key} is not an integer")
    if not isinstance(entry["body"], str) or not isinstance(entry["logID"], str):
        raise BadEntry("Rekor entry body and logID are strings")
    canonical = canonical_json(entry)
    if not any(_signed(key, set_bytes, canonical) for key in rekor_keys):
        raise BadEntry("its Rekor SignedEntryTimestamp is not signed by a trusted Rekor key")
    body = _parse(decode_b64(entry["body"], "Rekor entry body"), "Rekor entry body")
    if dsse:
        _check_dsse_body(body, key_or_cert_pem, signature, payload)
    else:
        _check_body(body, key_or_cert_pem, signature, payload)
    return int(entry["integratedTime"])


def _signed(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _check_body(body: Any, key_or_cert_pem: bytes, signature: bytes, payload: bytes) -> None:
    if not isinstance(body, dict) or body.get("kind") != "hashedrekord":
        raise BadEntry("the Rekor entry is not a hashedrekord")
    if body.get("apiVersion") != "0.0.1":
        raise BadEntry("the Rekor entry is not hashedrekord 0.0.1")
    spec = body.get("spec")
    try:
        hashed = spec["data"]["hash"]  # type: ignore[index]
        signed = spec["signature"]  # type: ignore[index]
        content, public = signed["content"], signed["publicKey"]["content"]
        algorithm, value = hashed["algorithm"], hashed["value"]
    except (KeyError, TypeError):
        raise BadEntry("the Rekor entry lacks its signature, key or hash") from None
    if decode_b64(content, "Rekor entry signature") != signature:
        raise BadEntry("the Rekor entry is of another signature")
    logged = pem_block(decode_b64(public, "Rekor entry public key"))
    if logged != pem_block(key_or_cert_pem):
        raise BadEntry("the Rekor entry names another key or certificate")
    if algorithm != "sha256" or value != hashlib.sha256(payload).hexdigest():
        raise BadEntry("the Rekor entry is of another payload")


def _check_dsse_body(body: Any, key_or_cert_pem: bytes, signature: bytes, payload: bytes) -> None:
    if not isinstance(body, dict) or body.get("kind") != "dsse":
        raise BadEntry("the Rekor entry is not a dsse entry")
    if body.get("apiVersion") != "0.0.1":
        raise BadEntry("the Rekor entry is not dsse 0.0.1")
    spec = body.get("spec")
    try:
        hashed = spec["payloadHash"]  # type: ignore[index]
        logged = spec["signatures"]  # type: ignore[index]
        algorithm, value = hashed["algorithm"], hashed["value"]
    except (KeyError, TypeError):
        raise BadEntry("the Rekor entry lacks its signatures or payload hash") from None
    if algorithm != "sha256" or value != hashlib.sha256(payload).hexdigest():
        raise BadEntry("the Rekor entry is of another payload")
    if not isinstance(logged, list) or len(logged) != 1 or not isinstance(logged[0], dict):
        raise BadEntry("the Rekor entry does not log exactly one signature")
    if decode_b64(logged[0].get("signature"), "Rekor entry signature") != signature:
        raise BadEntry("the Rekor entry is of another signature")
    verifier = pem_block(decode_b64(logged[0].get("verifier"), "Rekor entry verifier"))
    if verifier != pem_block(key_or_cert_pem):
        raise BadEntry("the Rekor entry names another key or certificate")
