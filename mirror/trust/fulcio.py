"""A Fulcio (keyless) certificate, checked offline as containers/image checks it
(signature/internal/fulcio_cert.go): the chain to a CA the policy gives, every certificate
valid at the Rekor entry's integrated time (a Fulcio certificate lives ten minutes), the code
signing usage, the OIDC issuer extension (1.3.6.1.4.1.57264.1.1 or .1.8, once) and the
subject's email among the certificate's SAN e-mail addresses.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier

from mirror.trust.keys import BadKey, PublicKey, certificates_from_pem, public_key_from_pem

__all__ = ["ISSUER_V1", "ISSUER_V2", "BadCertificate", "verify_certificate"]

ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
#: critical extensions understood here (any other makes the certificate unusable)
_KNOWN_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
}


class BadCertificate(ValueError):
    """A certificate that does not admit; the message says why."""


def _valid_at(cert: x509.Certificate, when: datetime.datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise BadCertificate(
            f"{what} was not valid at the Rekor entry's time {when:%Y-%m-%dT%H:%M:%SZ}"
        )


def _extensions(cert: x509.Certificate, what: str) -> x509.Extensions:
    try:
        found = cert.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise BadCertificate(f"{what} has bad extensions ({exc})") from None
    for ext in found:
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise BadCertificate(
                f"{what} has an unknown critical extension {ext.oid.dotted_string}"
            )
    return found


def _allows_code_signing(extensions: x509.Extensions, *, required: bool) -> bool:
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return not required
    return ExtendedKeyUsageOID.CODE_SIGNING in usage or (
        not required and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usage
    )


def _is_ca(extensions: x509.Extensions) -> bool:
    try:
        return bool(extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chain_to_root(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: datetime.datetime,
) -> None:
    current = leaf
    for _ in range(len(intermediates) + 1):
        if any(_issued_by(current, root) for root in roots):
            root = next(r for r in roots if _issued_by(current, r))
            _valid_at(root, when, "the Fulcio CA certificate")
            return
        parent = next((c for c in intermediates if _issued_by(current, c)), None)
        if parent is None:
            break
        what = f"intermediate certificate {parent.subject.rfc4514_string()}"
        extensions = _extensions(parent, what)
        if not _is_ca(extensions) or not _allows_code_signing(extensions, required=False):
            raise BadCertificate(f"{what} may not issue code-signing certificates")
        _valid_at(parent, when, what)
        current = parent
    raise BadCertificate("the certificate does not chain to the Fulcio CA the policy trusts")


def _der_utf8(value: bytes) -> str:
    """The text of a DER UTF8String with nothing after it."""
    if len(value) < 2 or value[0] != 0x0C:
        raise BadCertificate("the OIDC issuer extension is not a UTF8String")
    length, start = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(value) < 2 + count:
            raise BadCertificate("the OIDC issuer extension has a bad length")
        length, start = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if len(value) != start + length:
        raise BadCertificate("the OIDC issuer extension has bytes after its string")
    try:
        return value[start:].decode()
    except UnicodeDecodeError:
        raise BadCertificate("the OIDC issuer extension is not UTF-8") from None


def _issuer(extensions: x509.Extensions) -> str:
    found: list[str] = []
    for ext in extensions:
        if ext.oid in (ISSUER_V1, ISSUER_V2):
            if not isinstance(ext.value, x509.UnrecognizedExtension):
                raise BadCertificate("the OIDC issuer extension cannot be read")
            raw = ext.value.value
            if ext.oid == ISSUER_V1:
                try:
                    found.append(raw.decode())
                except UnicodeDecodeError:
                    raise BadCertificate("the OIDC issuer extension is not UTF-8") from None
            else:
                found.append(_der_utf8(raw))
    if not found:
        raise BadCertificate("the Fulcio certificate has no OIDC issuer extension")
    if len(found) > 1:
        raise BadCertificate("the Fulcio certificate names its OIDC issuer twice")
    return found[0]


def verify_certificate(
    leaf_pem: bytes,
    chain_pem: bytes | None,
    roots: Sequence[x509.Certificate],
    issuer: str,
    email: str,
    when: datetime.datetime,
) -> PublicKey:
    """The signing key of the Fulcio certificate `leaf_pem` once it holds at `when`:
    chained (through `chain_pem`, its last certificate the root and left out, as cosign
    writes it) to one of `roots`, for the OIDC `issuer` and the SAN `email`."""
    try:
        (leaf,) = certificates_from_pem(leaf_pem, most=1)
        chain = certificates_from_pem(chain_pem) if chain_pem else []
    except BadKey as exc:
        raise BadCertificate(f"the signature's certificate: {exc}") from None
    extensions = _extensions(leaf, "the Fulcio certificate")
    if not _allows_code_signing(extensions, required=True):
        raise BadCertificate("the Fulcio certificate is not for code signing")
    _valid_at(leaf, when, "the Fulcio certificate")
    _chain_to_root(leaf, chain[:-1], roots, when)
    got = _issuer(extensions)
    if got != issuer:
        raise BadCertificate(f"the certificate's OIDC issuer is {got!r}, not {issuer!r}")
    try:
        names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = names.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        emails = []
    if email not in emails:
        raise BadCertificate(f"the certificate is not for {email} (it names {emails})")
    try:
        spki = leaf.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        return public_key_from_pem(spki)
    except BadKey as exc:
        raise BadCertificate(f"the certificate's key: {exc}") from None
