"""The offline checks on their own: payloads read strictly, Rekor entries, Fulcio
certificates and sigstore bundles, each flaw one reason."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ObjectIdentifier

from mirror.trust.bundles import BadBundle, parse_bundle
from mirror.trust.fulcio import BadCertificate, verify_certificate
from mirror.trust.payload import BadPayload, parse_payload, parse_statement
from mirror.trust.rekor import BadEntry, verify_set
from mirror.trust.verify import signed_by
from tests.support.signing import (
    Fulcio,
    Rekor,
    make_key,
    payload,
    public_pem,
    sign,
    sigstore_bundle,
    statement,
)

D = "sha256:" + "c" * 64


def test_a_cosign_payload_is_read_exactly() -> None:
    read = parse_payload(payload(D, "r.io/a:v1"))
    assert (read.digest, read.identity) == (D, "r.io/a:v1")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (b'{"critical": {}}', "has fields []"),
        (payload(D, "r").replace(b"cosign container image signature", b"x"), "critical.type"),
        (payload(D, "r").replace(b'"optional":null', b'"extra":1'), "not cosign's simple"),
        (payload(D, "r").replace(b'"identity":{', b'"identity":{"x":1,'), "critical.identity"),
        (b"[" * 17 + b"]" * 17, "nested deeper than 16"),
        (b'{"critical": 1, "critical": 2}', "duplicate key 'critical'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_what_is_not_cosigns_payload_is_refused(text: bytes, said: str) -> None:
    with pytest.raises(BadPayload) as refused:
        parse_payload(text)
    assert said in str(refused.value)


def test_every_key_type_verifies_over_sha256_and_nothing_else() -> None:
    body = b"payload"
    for kind in ("p256", "p384", "rsa", "ed25519"):
        key = make_key(kind)
        assert signed_by(key.public_key(), sign(key, body), body)
        assert not signed_by(key.public_key(), sign(key, body), body + b"!")


def test_a_rekor_set_covers_the_canonical_entry_and_names_the_signature() -> None:
    rekor, key = Rekor(), make_key()
    body = payload(D, "r.io/a")
    raw = sign(key, body)
    bundle = rekor.bundle(raw, public_pem(key), body, 1767225600).encode()
    assert verify_set([rekor.key.public_key()], bundle, public_pem(key), raw, body) == 1767225600
    with pytest.raises(BadEntry, match="not signed by a trusted Rekor key"):
        verify_set([Rekor().key.public_key()], bundle, public_pem(key), raw, body)
    with pytest.raises(BadEntry, match="another key or certificate"):
        verify_set([rekor.key.public_key()], bundle, public_pem(make_key()), raw, body)
    with pytest.raises(BadEntry, match="another payload"):
        verify_set([rekor.key.public_key()], bundle, public_pem(key), raw, body + b" ")
    moved = json.loads(bundle)
    moved["Payload"]["integratedTime"] += 1  # the time is what the SET signs
    with pytest.raises(BadEntry, match="not signed by a trusted Rekor key"):
        verify_set([rekor.key.public_key()], json.dumps(moved).encode(), public_pem(key), raw, body)


def test_a_fulcio_certificate_is_judged_at_the_given_time() -> None:
    fulcio, key = Fulcio(), make_key()
    at = fulcio.start + datetime.timedelta(hours=1)
    leaf = fulcio.issue(key, "a@example.com", "https://i", at)
    chain = fulcio.chain_pem()
    roots = [fulcio.root]
    got = verify_certificate(leaf, chain, roots, "https://i", "a@example.com", at)
    assert got.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) == public_pem(key)
    with pytest.raises(BadCertificate, match="not valid at the Rekor entry's time"):
        verify_certificate(
            leaf, chain, roots, "https://i", "a@example.com", at + datetime.timedelta(minutes=11)
        )
    with pytest.raises(BadCertificate, match="does not chain"):
        verify_certificate(leaf, None, roots, "https://i", "a@example.com", at)  # no intermediate
    forged = fulcio.issue(key, "a@example.com", "https://i", at, signer=make_key())  # type: ignore[arg-type]
    with pytest.raises(BadCertificate, match="does not chain"):
        verify_certificate(forged, chain, roots, "https://i", "a@example.com", at)


def test_a_certificate_naming_its_issuer_twice_is_refused() -> None:
    fulcio, key = Fulcio(), make_key()
    at = fulcio.start + datetime.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(fulcio.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(at)
        .not_valid_after(at + datetime.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("a@example.com")]), True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), False)
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), b"https://i"),
            False,
        )
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), b"\x0c\x01x"),
            False,
        )
        .sign(fulcio.mid_key, hashes.SHA384())
    )
    with pytest.raises(BadCertificate, match="names its OIDC issuer twice"):
        verify_certificate(
            cert.public_bytes(Encoding.PEM),
            fulcio.chain_pem(),
            [fulcio.root],
            "https://i",
            "a@example.com",
            at,
        )


def test_a_bundle_is_read_strictly() -> None:
    key = make_key()
    good = sigstore_bundle(key, statement(D, "r.io/a"), rekor=Rekor())
    found = parse_bundle(good, "here")
    assert found.signed is not None
    assert found.signed.startswith(b"DSSEv1 28 application/vnd.in-toto+json ")
    assert parse_statement(found.payload).digest == D
    doc = json.loads(good)
    two = json.loads(good)
    two["dsseEnvelope"]["signatures"] *= 2
    other = dict(doc, mediaType="application/vnd.dev.sigstore.bundle.v0.1+json")
    nested = good[:-1] + b', "x": ' + b"[" * 40 + b"]" * 40 + b"}"
    for text, said in (
        (json.dumps(two).encode(), "exactly one signature"),
        (json.dumps(other).encode(), "not a sigstore bundle v0.3"),
        (nested, "nested deeper than 16"),
        (good[:-1] + b', "mediaType": "x"}', "duplicate key 'mediaType'"),
    ):
        with pytest.raises(BadBundle, match=said):
            parse_bundle(text, "here")
    assert base64.b64decode(doc["dsseEnvelope"]["payload"]) == found.payload
