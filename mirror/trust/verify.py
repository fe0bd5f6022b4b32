"""One signature judged against one `sigstoreSigned` requirement, as containers/image judges
it (signature/policy_eval_sigstore.go): the key (or the Fulcio certificate, at the Rekor
entry's time), the signature over the payload with SHA-256 whatever the key, the Rekor entry
when the policy names a Rekor key, then the payload's type, digest and identity.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mirror.oci.reference import RegistryReference
from mirror.trust.fulcio import BadCertificate, verify_certificate
from mirror.trust.keys import PublicKey, fingerprint
from mirror.trust.payload import BadPayload, parse_payload, parse_statement
from mirror.trust.policy import SigstoreSigned
from mirror.trust.rekor import BadEntry, check_entry, decode_b64, verify_set

__all__ = ["RekorEntry", "Signature", "Untrusted", "check_signature", "signed_by"]


@dataclass(frozen=True)
class RekorEntry:
    """A Rekor entry carried in a sigstore bundle: its fields and its SET."""

    fields: dict[str, object]
    signed_entry_timestamp: bytes


@dataclass(frozen=True)
class Signature:
    """One signature found beside an image: where it was, the payload signed, the base64
    signature, and for keyless or logged ones the certificate (PEM), its chain and the
    Rekor entry (cosign's bundle annotation, or a sigstore bundle's tlog entry)."""

    where: str
    payload: bytes
    signature: str
    certificate: bytes | None = None
    chain: bytes | None = None
    rekor_bundle: bytes | None = None
    rekor_entry: RekorEntry | None = None
    #: what the signature covers when it is not the payload itself (a DSSE envelope's
    #: pre-authentication encoding of an in-toto statement: a sigstore bundle's)
    signed: bytes | None = None
    #: why a signature found cannot be judged at all (a bundle that cannot be read)
    unusable: str = ""

    @property
    def data(self) -> bytes:
        """The bytes the signature is over."""
        return self.payload if self.signed is None else self.signed


class Untrusted(ValueError):
    """A signature that does not admit the image; the message says why."""


def signed_by(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    """Whether `signature` is `key`'s over `payload`, hashed with SHA-256 (ECDSA of any
    curve, RSA PKCS#1 v1.5 or PSS) or Ed25519's own."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
                key.verify(signature, payload, pss, hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _pem(key: PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _logged_time(found: Signature, rule: SigstoreSigned, key_or_cert: bytes, raw: bytes) -> int:
    """The integrated time of the signature's Rekor entry, checked with the policy's keys."""
    if found.rekor_entry is not None:
        entry = found.rekor_entry
        return check_entry(
            rule.rekor_keys,
            dict(entry.fields),
            entry.signed_entry_timestamp,
            key_or_cert,
            raw,
            found.payload,
            dsse=found.signed is not None,
        )
    if found.rekor_bundle is None:
        raise Untrusted("it has no Rekor entry (the policy names a Rekor key)")
    return verify_set(rule.rekor_keys, found.rekor_bundle, key_or_cert, raw, found.payload)


def check_signature(
    found: Signature, rule: SigstoreSigned, digest: str, image: RegistryReference | None
) -> str:
    """What admits the image `image` at `digest` by `found` under `rule` (`key SHA256:…`, or
    `issuer … subject …`); Untrusted naming the first thing that does not hold."""
    if found.unusable:
        raise Untrusted(found.unusable)
    try:
        raw = decode_b64(found.signature, "the signature")
        if rule.fulcio is not None:
            fulcio = rule.fulcio
            if found.certificate is None:
                raise Untrusted("it has no certificate (the policy wants a Fulcio one)")
            when = _logged_time(found, rule, found.certificate, raw)
            at = datetime.datetime.fromtimestamp(when, datetime.UTC)
            key = verify_certificate(
                found.certificate, found.chain, fulcio.roots, fulcio.issuer, fulcio.email, at
            )
            if not signed_by(key, raw, found.data):
                raise Untrusted("the signature does not match its certificate")
            who = f"issuer {fulcio.issuer} subject {fulcio.email}"
        else:
            signer = next((k for k in rule.keys if signed_by(k, raw, found.data)), None)
            if signer is None:
                raise Untrusted("signed by a key the policy does not trust")
            if rule.rekor_keys:
                _logged_time(found, rule, _pem(signer), raw)
            who = f"key {fingerprint(signer)}"
        read = parse_payload if found.signed is None else parse_statement
        payload = read(found.payload)
    except (BadEntry, BadCertificate, BadPayload) as exc:
        raise Untrusted(str(exc)) from None
    if payload.digest != digest:
        raise Untrusted(f"its payload names another digest ({payload.digest})")
    if not rule.identity.matches(image, payload.identity):
        raise Untrusted(
            f"its identity {payload.identity!r} does not match under {rule.identity.describe()}"
        )
    return who
