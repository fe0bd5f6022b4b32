"""cosign 3's signatures: sigstore bundles (v0.3, a DSSE envelope of an in-toto statement)
attached as OCI 1.1 referrers, found through the referrers fallback tag and checked offline."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

import mirror
from mirror.trust.policy import load_policy
from tests.support.registry import Registry
from tests.support.signed_images import pushed_image, repository
from tests.support.signing import (
    Fulcio,
    Rekor,
    keyed,
    make_key,
    policy_file,
    push_bundle_referrer,
    sigstore_bundle,
    statement,
    write_public,
)

EMAIL, ISSUER = "ci@example.com", "https://token.actions.example.com"


async def _attached(
    registry: Registry, tmp_path: Path, name: str, make: Callable[[str], bytes]
) -> str:
    """An image `name:v1` with the bundle `make(digest)` attached; its digest."""
    digest = await pushed_image(registry, name, tmp_path, name)
    async with repository(registry.host, name) as repo:
        subject = await repo.manifest_get("v1")
        await push_bundle_referrer(repo, subject, make(digest))
    return digest


async def test_a_keyless_bundle_in_a_referrer_admits_the_image_and_travels_with_it(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    fulcio, rekor = Fulcio(), Rekor()
    name = "bundles/keyless"
    at = fulcio.start + datetime.timedelta(minutes=3)
    key = make_key("p256")
    leaf = fulcio.issue(key, EMAIL, ISSUER, at)
    when = int(at.timestamp()) + 20

    origin = f"{registry.host}/{name}"

    def make(digest: str) -> bytes:
        body = statement(digest, origin)
        return sigstore_bundle(key, body, certificate=leaf, rekor=rekor, when=when)

    await _attached(registry, tmp_path, name, make)
    (tmp_path / "ca.pem").write_bytes(fulcio.root_pem() + fulcio.chain_pem())
    (tmp_path / "rekor.pub").write_bytes(rekor.public_pem())
    rule = {
        "type": "sigstoreSigned",
        "fulcio": {"caPath": str(tmp_path / "ca.pem"), "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
        "rekorPublicKeyPath": str(tmp_path / "rekor.pub"),
        "signedIdentity": {"type": "matchRepository"},
    }
    policy = load_policy(policy_file(tmp_path / "p.json", {registry.host: [rule]}))
    result = await mirror.copy(
        f"docker://{registry.host}/{name}:v1",
        f"docker://{second_registry.host}/{name}:v1",
        policy=policy,
    )
    assert result.admitted is not None
    assert result.admitted.by == f"issuer {ISSUER} subject {EMAIL}"
    assert result.referrers == 1  # the bundle crossed with the image
    there = {**rule, "signedIdentity": {"type": "exactRepository", "dockerRepository": origin}}
    later = await mirror.copy(  # and admits the copy there, from what crossed
        f"docker://{second_registry.host}/{name}:v1",
        f"oci:{tmp_path / 'again'}:img",
        policy=load_policy(policy_file(tmp_path / "q.json", {"": [there]})),
    )
    assert later.admitted is not None


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("keyed", ""),
        ("another digest", "names another digest"),
        ("an attestation", "predicateType is not https://sigstore.dev/cosign/sign/v1"),
        ("no identity", "identity '' does not match"),
        ("another key", "signed by a key the policy does not trust"),
    ],
)
async def test_keyed_bundles(registry: Registry, tmp_path: Path, case: str, said: str) -> None:
    name = "bundles/" + case.replace(" ", "-")
    key = make_key("ed25519")
    signer = make_key("ed25519") if case == "another key" else key

    def make(digest: str) -> bytes:
        named = "" if case == "no identity" else f"{registry.host}/{name}"
        about = "sha256:" + "0" * 64 if case == "another digest" else digest
        kind = "https://slsa.dev/provenance/v1" if case == "an attestation" else None
        body = statement(about, named, kind) if kind else statement(about, named)
        return sigstore_bundle(signer, body)

    await _attached(registry, tmp_path, name, make)
    rule = keyed(write_public(key, tmp_path / "k.pub"), identity={"type": "matchRepository"})
    policy = load_policy(policy_file(tmp_path / "p.json", {"": rule}))
    copying = mirror.copy(
        f"docker://{registry.host}/{name}:v1", f"oci:{tmp_path / 'out'}:img", policy=policy
    )
    if not said:
        assert (await copying).admitted is not None
        return
    with pytest.raises(mirror.Refused, match="no valid signature") as refused:
        await copying
    assert said in str(refused.value)
    assert not (tmp_path / "out").exists()
