"""Sigstore bundles (v0.3, protobuf-specs' JSON) as cosign 3 attaches them to an image: an
OCI 1.1 referrer whose layer is the bundle, holding a DSSE envelope of an in-toto statement
(`predicateType` `https://sigstore.dev/cosign/sign/v1`, the image's digest as its subject),
the signing certificate (or, keyed, a key hint) and the Rekor entry with its SET.

Read as strictly as the simple-signing payload: bounded JSON, no duplicate key, the fields
this check needs present and typed. The statement's subject `name`, when given, is the
identity `signedIdentity` judges; a statement without one names no identity.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mirror.trust.payload import IN_TOTO, BadPayload, strict_json
from mirror.trust.rekor import BadEntry, decode_b64
from mirror.trust.verify import RekorEntry, Signature

__all__ = [
    "BUNDLE_TYPES",
    "BadBundle",
    "pae",
    "parse_bundle",
]

BUNDLE_TYPES = (
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
)
#: the most certificates a bundle's chain may hold
_MAX_CERTIFICATES = 11


class BadBundle(ValueError):
    """A bundle that is not a usable cosign image signature; the message says why."""


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            raise BadBundle(f"the bundle lacks {'.'.join(path)}")
        obj = obj[key]
    return obj


def _integer(value: Any, what: str) -> int:
    """An int64 as protobuf JSON writes it (a string of digits, or a number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        return int(value)
    raise BadBundle(f"the bundle's {what} is not an integer")


def _pem(der: bytes) -> bytes:
    try:
        return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    except ValueError:
        raise BadBundle("the bundle's certificate cannot be read") from None


def _certificates(material: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """The leaf certificate (PEM) and the rest of its chain (PEM), or None, None (keyed)."""
    if "certificate" in material:
        raw = decode_b64(_get(material, "certificate", "rawBytes"), "the bundle's certificate")
        return _pem(raw), None
    if "x509CertificateChain" in material:
        listed = _get(material, "x509CertificateChain", "certificates")
        if not isinstance(listed, list) or not 0 < len(listed) <= _MAX_CERTIFICATES:
            raise BadBundle(f"the bundle's chain holds 1 to {_MAX_CERTIFICATES} certificates")
        pems = [_pem(decode_b64(_get(c, "rawBytes"), "the bundle's certificate")) for c in listed]
        # the chain is read as cosign's chain annotation, whose last certificate (the root)
        # is left out: given here as a chain without its root, the last one is repeated
        return pems[0], (b"".join(pems[1:]) + pems[-1]) if len(pems) > 1 else None
    if "publicKey" in material:
        return None, None
    raise BadBundle("the bundle has no certificate nor public key")


def _entry(material: dict[str, Any]) -> RekorEntry | None:
    entries = material.get("tlogEntries")
    if not entries:
        return None
    if not isinstance(entries, list) or len(entries) > 1:
        raise BadBundle("the bundle holds more than one Rekor entry")
    (entry,) = entries
    kind = _get(entry, "kindVersion")
    if kind != {"kind": "dsse", "version": "0.0.1"}:
        raise BadBundle("the bundle's Rekor entry is not a dsse 0.0.1 entry")
    log_id = decode_b64(_get(entry, "logId", "keyId"), "the bundle's log ID")
    promise = _get(entry, "inclusionPromise", "signedEntryTimestamp")
    body = _get(entry, "canonicalizedBody")
    if not isinstance(body, str):
        raise BadBundle("the bundle's Rekor entry body is not base64")
    return RekorEntry(
        {
            "body": body,
            "integratedTime": _integer(_get(entry, "integratedTime"), "integratedTime"),
            "logIndex": _integer(_get(entry, "logIndex"), "logIndex"),
            "logID": log_id.hex(),
        },
        decode_b64(promise, "the bundle's SignedEntryTimestamp"),
    )


def parse_bundle(raw: bytes, where: str) -> Signature:
    """The signature a cosign image-signature bundle holds (BadBundle when it is not one)."""
    try:
        doc = strict_json(raw, "the bundle")
        if not isinstance(doc, dict) or doc.get("mediaType") not in BUNDLE_TYPES:
            raise BadBundle("not a sigstore bundle v0.3")
        material = _get(doc, "verificationMaterial")
        if not isinstance(material, dict):
            raise BadBundle("the bundle's verificationMaterial is not an object")
        envelope = _get(doc, "dsseEnvelope")
        if _get(envelope, "payloadType") != IN_TOTO:
            raise BadBundle("the bundle's envelope is not an in-toto statement")
        signatures = _get(envelope, "signatures")
        if not isinstance(signatures, list) or len(signatures) != 1:
            raise BadBundle("the bundle's envelope does not hold exactly one signature")
        payload = decode_b64(_get(envelope, "payload"), "the bundle's payload")
        signature = _get(signatures[0], "sig")
        certificate, chain = _certificates(material)
        entry = _entry(material)
    except (BadEntry, BadPayload) as exc:
        raise BadBundle(str(exc)) from None
    if not isinstance(signature, str):
        raise BadBundle("the bundle's signature is not base64")
    return Signature(
        where=where,
        payload=payload,
        signature=signature,
        certificate=certificate,
        chain=chain,
        rekor_entry=entry,
        signed=pae(IN_TOTO, payload),
    )
