"""Hostile signatures: each is bounded, refused in one line, exit 1, nothing written."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mirror.endpoint import bytes_source
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, fallback_tag, parse_manifest
from mirror.registry import Repository
from tests.support.registry import Registry
from tests.support.signed_images import copy_refused, holds_repository, pushed_image, repository
from tests.support.signing import (
    SIMPLE_SIGNING,
    Fulcio,
    Rekor,
    SignatureLayer,
    keyed,
    keyless,
    keyless_rule,
    make_key,
    payload,
    policy_file,
    push_signatures,
    signed,
    signed_payload,
    write_public,
)

KEY = make_key("p256")


def _deep_chain(depth: int) -> str:
    """`depth` certificates, each issuing the next (a chain 50 deep)."""
    pems, issuer_key, issuer = [], ec.generate_private_key(ec.SECP256R1()), "ca-0"
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for i in range(1, depth + 1):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ca-{i}")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(i)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1))
            .sign(issuer_key, hashes.SHA256())
        )
        pems.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        issuer_key, issuer = key, f"ca-{i}"
    return "".join(reversed(pems))


async def _many_signatures(repo: Repository, digest: str, count: int) -> None:
    """One signature image holding `count` layers (all the same signed payload)."""
    layer = signed(KEY, digest, "x")
    blob = Descriptor(SIMPLE_SIGNING, Digest.of(layer.payload), len(layer.payload))
    await repo.blob_put(blob, bytes_source(layer.payload))
    config = b"{}"
    config_desc = Descriptor(mt.OCI_CONFIG, Digest.of(config), len(config))
    await repo.blob_put(config_desc, bytes_source(config))
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [{**blob.to_json(), "annotations": dict(layer.annotations)}] * count,
    }
    manifest = parse_manifest(json.dumps(body).encode(), mt.OCI_MANIFEST)
    await repo.image_put(manifest, f"{fallback_tag(Digest(digest))}.sig")


CASES = {
    "a 100 MB signature layer": "over the 65536 byte limit",
    "10,000 signatures": "holds 10000 signatures (at most 100)",
    "broken base64": "the signature is not valid base64",
    "a certificate chain 50 deep": "more than 11 certificates",
    "payload JSON nested deeply": "payload is JSON nested deeper than 16",
    "payload JSON with duplicate keys": "payload: duplicate key 'critical'",
}


@pytest.mark.parametrize("case", list(CASES))
async def test_hostile_signatures_are_bounded_and_refused_in_one_line(
    registry: Registry, second_registry: Registry, tmp_path: Path, case: str
) -> None:
    name = f"hostile/case{list(CASES).index(case)}"
    digest = await pushed_image(registry, name, tmp_path, case)
    identity = f"{registry.host}/{name}:v1"
    policy = policy_file(tmp_path / "p.json", {"": keyed(write_public(KEY, tmp_path / "k.pub"))})
    async with repository(registry.host, name) as repo:
        if case == "a 100 MB signature layer":
            good = signed(KEY, digest, identity)
            huge = good.payload + b" " * (100 * 1024 * 1024)
            await push_signatures(repo, digest, [SignatureLayer(huge, good.annotations)])
        elif case == "10,000 signatures":
            await _many_signatures(repo, digest, 10_000)
        elif case == "broken base64":
            body = payload(digest, identity)
            notes = {"dev.cosignproject.cosign/signature": "MEUC!!!not base64"}
            await push_signatures(repo, digest, [SignatureLayer(body, notes)])
        elif case == "a certificate chain 50 deep":
            fulcio, rekor = Fulcio(), Rekor()
            layer = keyless(fulcio, rekor, digest, identity)
            notes = {**layer.annotations, "dev.sigstore.cosign/chain": _deep_chain(50)}
            await push_signatures(repo, digest, [SignatureLayer(layer.payload, notes)])
            rule = keyless_rule(tmp_path, fulcio, rekor)
            policy = policy_file(tmp_path / "p.json", {"": [rule]})
        elif case == "payload JSON nested deeply":
            body = b'{"critical":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
            await push_signatures(repo, digest, [signed_payload(KEY, body)])
        else:
            plain = payload(digest, identity)
            body = plain[:-1] + b',"critical":{}}'
            await push_signatures(repo, digest, [signed_payload(KEY, body)])
    line = await copy_refused(
        policy, f"docker://{registry.host}/{name}:v1", f"docker://{second_registry.host}/{name}:v1"
    )
    assert line.startswith(f"mirror: error: docker://{identity}: refused by policy")
    assert CASES[case] in line
    assert len(line) < 2000
    assert not holds_repository(second_registry, name)
