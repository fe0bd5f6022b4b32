"""Signing images in the tests themselves, in cosign's exact formats, with `cryptography`.

- keys as cosign makes them (ECDSA P-256/P-384, RSA, Ed25519), signing SHA-256 of the payload
  (ECDSA as ASN.1 DER, RSA PKCS#1 v1.5, Ed25519 over the payload itself);
- cosign's simple-signing payload (`{"critical": …, "optional": null}`);
- the signature image under the digest tag `sha256-<hex>.sig`: one
  `application/vnd.dev.cosign.simplesigning.v1+json` layer per signature, its annotations
  `dev.cosignproject.cosign/signature` (base64) and, keyless, `dev.sigstore.cosign/certificate`,
  `…/chain`, `…/bundle` (the Rekor SET);
- a test Fulcio CA issuing ten-minute code-signing leaves with the OIDC issuer extension and
  an e-mail SAN, and a test Rekor key signing hashedrekord entries' SETs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from mirror.endpoint import Endpoint, bytes_source
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, ManifestLike, fallback_tag, parse_manifest

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_TYPE = "cosign container image signature"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def make_key(kind: str = "p256") -> PrivateKey:
    """A new private key: `p256`, `p384`, `rsa` (2048 bits) or `ed25519`."""
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def public_pem(key: PrivateKey) -> bytes:
    """The public half as cosign.pub holds it (PEM SubjectPublicKeyInfo)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_public(key: PrivateKey, path: Path) -> Path:
    """Write the public key to `path` (a cosign.pub); `path`."""
    path.write_bytes(public_pem(key))
    return path


def sign(key: PrivateKey, data: bytes, *, pss: bool = False) -> bytes:
    """cosign's signature of `data`: SHA-256 whatever the key (Ed25519 signs the data)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        if pss:
            pad = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
            return key.sign(data, pad, hashes.SHA256())
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def payload(digest: str, identity: str) -> bytes:
    """cosign's simple-signing payload for the manifest `digest` signed as `identity`."""
    body = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_TYPE,
        },
        "optional": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SignatureLayer:
    """One signature: the payload layer's bytes and its annotations."""

    payload: bytes
    annotations: Mapping[str, str]


def signed_payload(key: PrivateKey, body: bytes, *, pss: bool = False) -> SignatureLayer:
    """A signature by `key` over `body` taken as the payload exactly as given."""
    raw = base64.b64encode(sign(key, body, pss=pss)).decode()
    return SignatureLayer(body, {"dev.cosignproject.cosign/signature": raw})


def signed(key: PrivateKey, digest: str, identity: str, **extra: str) -> SignatureLayer:
    """A signature by `key` of `digest` as `identity` (extra annotations as given)."""
    layer = signed_payload(key, payload(digest, identity))
    return SignatureLayer(layer.payload, {**layer.annotations, **extra})


async def _blob(endpoint: Endpoint, data: bytes, media_type: str) -> Descriptor:
    desc = Descriptor(media_type, Digest.of(data), len(data))
    await endpoint.blob_put(desc, bytes_source(data))
    return desc


async def signature_manifest(endpoint: Endpoint, layers: Sequence[SignatureLayer]) -> ManifestLike:
    """The manifest cosign writes holding `layers` (its blobs pushed, not tagged)."""
    descs = [await _blob(endpoint, layer.payload, SIMPLE_SIGNING) for layer in layers]
    config_body = {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"} for _ in descs],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in descs]},
        "config": {},
    }
    config = await _blob(endpoint, json.dumps(config_body).encode(), mt.OCI_CONFIG)
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [
            {**d.to_json(), "annotations": dict(layer.annotations)}
            for d, layer in zip(descs, layers, strict=True)
        ],
    }
    return parse_manifest(json.dumps(body).encode(), mt.OCI_MANIFEST)


async def push_signatures(
    endpoint: Endpoint, subject: Digest | str, layers: Sequence[SignatureLayer]
) -> ManifestLike:
    """Push `layers` as cosign's signature image of `subject`, `sha256-<hex>.sig`."""
    manifest = await signature_manifest(endpoint, layers)
    await endpoint.image_put(manifest, f"{fallback_tag(Digest(str(subject)))}.sig")
    return manifest


ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def _utf8_der(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class Fulcio:
    """A test Fulcio: a root CA and an intermediate, issuing ten-minute leaves."""

    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    mid_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    start: datetime.datetime = field(
        default_factory=lambda: datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    )

    def __post_init__(self) -> None:
        until = self.start + datetime.timedelta(days=3650)
        self.root = (
            x509.CertificateBuilder()
            .subject_name(_name("sigstore"))
            .issuer_name(_name("sigstore"))
            .public_key(self.root_key.public_key())
            .serial_number(1)
            .not_valid_before(self.start)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(self.root_key, hashes.SHA384())
        )
        self.intermediate = (
            x509.CertificateBuilder()
            .subject_name(_name("sigstore-intermediate"))
            .issuer_name(self.root.subject)
            .public_key(self.mid_key.public_key())
            .serial_number(2)
            .not_valid_before(self.start)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .sign(self.root_key, hashes.SHA384())
        )

    def root_pem(self) -> bytes:
        """The CA certificate a policy's `caPath` names."""
        return self.root.public_bytes(serialization.Encoding.PEM)

    def chain_pem(self) -> bytes:
        """cosign's chain annotation: the intermediate, then the root."""
        return self.intermediate.public_bytes(serialization.Encoding.PEM) + self.root_pem()

    def issue(
        self,
        key: PrivateKey,
        email: str,
        issuer: str,
        at: datetime.datetime,
        *,
        v2: bool = True,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """A leaf for `key` valid ten minutes from `at`, for `email` signed in at `issuer`
        (the issuer as extension .1.8, a DER UTF8String, or `v2=False`: .1.1, raw)."""
        value = _utf8_der(issuer) if v2 else issuer.encode()
        oid = ISSUER_V2 if v2 else ISSUER_V1
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(at)
            .not_valid_after(at + datetime.timedelta(minutes=10))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
            .sign(signer or self.mid_key, hashes.SHA384())
        )
        return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Rekor:
    """A test Rekor: its key signs entries' signed timestamps (SETs)."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    index: int = 1000

    def public_pem(self) -> bytes:
        """What a policy's `rekorPublicKeyPath` names."""
        return public_pem(self.key)

    def entry(
        self, signature: bytes, key_or_cert_pem: bytes, body_payload: bytes, when: int
    ) -> dict[str, object]:
        """The entry Rekor logs for a hashedrekord of `signature` over `body_payload`."""
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {
                    "hash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(body_payload).hexdigest(),
                    }
                },
                "signature": {
                    "content": base64.b64encode(signature).decode(),
                    "publicKey": {"content": base64.b64encode(key_or_cert_pem).decode()},
                },
            },
        }
        self.index += 1
        log_id = hashlib.sha256(public_pem(self.key)).hexdigest()
        return {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "integratedTime": when,
            "logIndex": self.index,
            "logID": log_id,
        }

    def set_of(self, entry: Mapping[str, object]) -> bytes:
        """The SET: ECDSA over SHA-256 of the entry's canonical JSON."""
        canonical = json.dumps(dict(entry), sort_keys=True, separators=(",", ":")).encode()
        return self.key.sign(canonical, ec.ECDSA(hashes.SHA256()))

    def bundle(
        self, signature: bytes, key_or_cert_pem: bytes, body_payload: bytes, when: int
    ) -> str:
        """cosign's `dev.sigstore.cosign/bundle` annotation for the signature."""
        entry = self.entry(signature, key_or_cert_pem, body_payload, when)
        return json.dumps(
            {
                "SignedEntryTimestamp": base64.b64encode(self.set_of(entry)).decode(),
                "Payload": entry,
            }
        )


def keyless(
    fulcio: Fulcio,
    rekor: Rekor,
    digest: str,
    identity: str,
    *,
    email: str = "dev@example.com",
    issuer: str = "https://accounts.example.com",
    at: datetime.datetime | None = None,
    logged_at: datetime.datetime | None = None,
    v2: bool = True,
) -> SignatureLayer:
    """A keyless signature as `cosign sign` makes it: an ephemeral key, a Fulcio leaf for
    `email` at `issuer` issued at `at` (the issuer extension as `Fulcio.issue` takes `v2`), its
    chain, and a Rekor bundle logged at `logged_at` (at defaults to a minute after the CA's
    start, logged_at to 30 s after at)."""
    at = at or fulcio.start + datetime.timedelta(minutes=1)
    logged_at = logged_at or at + datetime.timedelta(seconds=30)
    key = make_key("p256")
    cert = fulcio.issue(key, email, issuer, at, v2=v2)
    body = payload(digest, identity)
    raw = sign(key, body)
    return SignatureLayer(
        body,
        {
            "dev.cosignproject.cosign/signature": base64.b64encode(raw).decode(),
            "dev.sigstore.cosign/certificate": cert.decode(),
            "dev.sigstore.cosign/chain": fulcio.chain_pem().decode(),
            "dev.sigstore.cosign/bundle": rekor.bundle(raw, cert, body, int(logged_at.timestamp())),
        },
    )


def policy_file(path: Path, docker: Mapping[str, object], default: object = None) -> Path:
    """Write a containers-policy.json: `docker` scopes, `default` (reject when None)."""
    body = {
        "default": default if default is not None else [{"type": "reject"}],
        "transports": {"docker": dict(docker)},
    }
    path.write_text(json.dumps(body, indent=2))
    return path


def keyless_rule(
    folder: Path,
    fulcio: Fulcio,
    rekor: Rekor,
    *,
    issuer: str = "https://accounts.example.com",
    email: str = "dev@example.com",
    identity: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """A `sigstoreSigned` requirement trusting `fulcio`'s root CA for `email` signed in at
    `issuer`, and `rekor`'s key (written into `folder` as ca.pem and rekor.pub)."""
    (folder / "ca.pem").write_bytes(fulcio.root_pem())
    (folder / "rekor.pub").write_bytes(rekor.public_pem())
    rule: dict[str, object] = {
        "type": "sigstoreSigned",
        "fulcio": {"caPath": str(folder / "ca.pem"), "oidcIssuer": issuer, "subjectEmail": email},
        "rekorPublicKeyPath": str(folder / "rekor.pub"),
    }
    if identity is not None:
        rule["signedIdentity"] = dict(identity)
    return rule


def keyed(*paths: Path, identity: Mapping[str, str] | None = None) -> list[dict[str, object]]:
    """A `sigstoreSigned` requirement trusting the keys at `paths`."""
    rule: dict[str, object] = {"type": "sigstoreSigned"}
    if len(paths) == 1:
        rule["keyPath"] = str(paths[0])
    else:
        rule["keyPaths"] = [str(p) for p in paths]
    if identity is not None:
        rule["signedIdentity"] = dict(identity)
    return [rule]


BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


def statement(digest: str, name: str = "", predicate_type: str = SIGN_PREDICATE) -> bytes:
    """cosign 3's image-signature statement about `digest` (its subject named `name`)."""
    subject: dict[str, object] = {"digest": {"sha256": digest.removeprefix("sha256:")}}
    if name:
        subject["name"] = name
    body = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [subject],
        "predicateType": predicate_type,
        "predicate": {},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def sigstore_bundle(
    key: PrivateKey,
    body: bytes,
    *,
    certificate: bytes | None = None,
    rekor: Rekor | None = None,
    when: int = 1767225660,
) -> bytes:
    """A sigstore bundle v0.3 as cosign 3 writes it: a DSSE envelope of `body` signed by
    `key`, its leaf `certificate` (PEM; else a public-key hint) and a dsse Rekor entry."""
    raw = sign(key, pae(IN_TOTO, body))
    material: dict[str, object] = (
        {"certificate": {"rawBytes": base64.b64encode(_der(certificate)).decode()}}
        if certificate
        else {"publicKey": {"hint": ""}}
    )
    if rekor is not None:
        verifier = certificate or public_pem(key)
        logged = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(body).hexdigest()},
                "signatures": [
                    {
                        "signature": base64.b64encode(raw).decode(),
                        "verifier": base64.b64encode(verifier).decode(),
                    }
                ],
            },
        }
        rekor.index += 1
        entry = {
            "body": base64.b64encode(json.dumps(logged).encode()).decode(),
            "integratedTime": when,
            "logIndex": rekor.index,
            "logID": hashlib.sha256(public_pem(rekor.key)).hexdigest(),
        }
        material["tlogEntries"] = [
            {
                "logIndex": str(entry["logIndex"]),
                "logId": {"keyId": base64.b64encode(bytes.fromhex(str(entry["logID"]))).decode()},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": str(when),
                "inclusionPromise": {
                    "signedEntryTimestamp": base64.b64encode(rekor.set_of(entry)).decode()
                },
                "canonicalizedBody": entry["body"],
            }
        ]
    doc = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": base64.b64encode(body).decode(),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": base64.b64encode(raw).decode(), "keyid": ""}],
        },
    }
    return json.dumps(doc).encode()


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


async def push_bundle_referrer(
    endpoint: Endpoint, subject: ManifestLike, bundle: bytes, *, listed: Sequence[Descriptor] = ()
) -> Descriptor:
    """Attach `bundle` to `subject` as cosign 3 does (an OCI 1.1 artifact, its fallback tag
    written for a registry without the referrers API, after the `listed` ones); the
    referrer's descriptor as the listing holds it."""
    layer = await _blob(endpoint, bundle, BUNDLE_V03)
    config = await _blob(endpoint, b"{}", "application/vnd.oci.empty.v1+json")
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": config.to_json(),
        "layers": [layer.to_json()],
        "subject": subject.descriptor().to_json(),
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope"},
    }
    manifest = parse_manifest(json.dumps(body).encode(), mt.OCI_MANIFEST)
    await endpoint.manifest_put(manifest)
    desc = Descriptor(mt.OCI_MANIFEST, manifest.digest, manifest.size, artifact_type=BUNDLE_V03)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [d.to_json() for d in (*listed, desc)],
    }
    listing = parse_manifest(json.dumps(index).encode(), mt.OCI_INDEX)
    await endpoint.image_put(listing, fallback_tag(subject.digest))
    return desc
