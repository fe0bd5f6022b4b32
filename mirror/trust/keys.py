"""Public keys and certificates from PEM: the key types cosign makes, and their fingerprints."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = [
    "MAX_CHAIN",
    "MAX_PEM",
    "BadKey",
    "PublicKey",
    "certificates_from_pem",
    "fingerprint",
    "public_key_from_pem",
]

#: the largest PEM text read (a key, a certificate, a chain)
MAX_PEM = 256 * 1024
#: the most certificates a chain may hold (leaf excluded)
MAX_CHAIN = 10

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_CURVES = (ec.SECP256R1, ec.SECP384R1)


class BadKey(ValueError):
    """PEM that is no usable key or certificate; the message says why."""


def public_key_from_pem(data: bytes) -> PublicKey:
    """The one public key in PEM `data`: ECDSA P-256/P-384, RSA (2048 bits or more) or
    Ed25519; BadKey otherwise."""
    if len(data) > MAX_PEM:
        raise BadKey(f"over {MAX_PEM} bytes")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadKey(f"not a PEM public key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise BadKey(f"ECDSA curve {key.curve.name} is not P-256 or P-384")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise BadKey(f"RSA key of {key.key_size} bits (2048 or more needed)")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise BadKey(f"unsupported key type {type(key).__name__}")


def certificates_from_pem(data: bytes, *, most: int = MAX_CHAIN + 1) -> list[x509.Certificate]:
    """The certificates of PEM `data`, in order (at least one, at most `most`)."""
    if len(data) > MAX_PEM:
        raise BadKey(f"over {MAX_PEM} bytes")
    if data.count(b"-----BEGIN CERTIFICATE-----") > most:
        raise BadKey(f"more than {most} certificates")
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise BadKey(f"not PEM certificates ({exc})") from None
    if not found:
        raise BadKey("no certificate")
    return found


def fingerprint(key: PublicKey) -> str:
    """`SHA256:<hex>` of the key's DER SubjectPublicKeyInfo (what reports name a key by)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(der).hexdigest()
