"""Keyless signatures: a certificate of a test Fulcio CA (issuer extension, e-mail SAN),
judged at its Rekor entry's integrated time, the entry's SET checked with a test Rekor key;
and a keyed signature whose policy also wants a Rekor entry. All offline."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest

import mirror
from mirror.trust.policy import load_policy
from tests.support.registry import Registry
from tests.support.signed_images import push_signed, pushed_image
from tests.support.signing import (
    Fulcio,
    Rekor,
    SignatureLayer,
    keyed,
    keyless,
    keyless_rule,
    make_key,
    payload,
    policy_file,
    public_pem,
    sign,
    write_public,
)

ISSUER = "https://accounts.example.com"
EMAIL = "dev@example.com"


@pytest.fixture(scope="module")
def fulcio() -> Fulcio:
    """One test CA (its certificates from 2026-01-01: long expired by the time tests run)."""
    return Fulcio()


@pytest.fixture(scope="module")
def rekor() -> Rekor:
    """One test Rekor log key."""
    return Rekor()


async def _digest_of(registry: Registry, name: str, tmp_path: Path) -> str:
    return await pushed_image(registry, name, tmp_path, name)


async def _copy_signed(
    registry: Registry,
    name: str,
    digest: str,
    layer: SignatureLayer,
    tmp_path: Path,
    fulcio: Fulcio,
    rekor: Rekor,
) -> mirror.CopyResult:
    """Push `layer` as the signature of `name`'s `digest`, then copy `name:v1` into a layout
    judged by the keyless policy trusting `fulcio` and `rekor` for EMAIL at ISSUER."""
    await push_signed(registry.host, name, digest, [layer])
    rule = keyless_rule(
        tmp_path, fulcio, rekor, issuer=ISSUER, email=EMAIL, identity={"type": "matchRepository"}
    )
    return await mirror.copy(
        f"docker://{registry.host}/{name}:v1",
        f"oci:{tmp_path / 'out'}:img",
        policy=load_policy(policy_file(tmp_path / "keyless.json", {"": [rule]})),
    )


async def test_a_keyless_signature_is_admitted_at_its_rekor_time_though_long_expired(
    registry: Registry, tmp_path: Path, fulcio: Fulcio, rekor: Rekor
) -> None:
    name = "keyless/ok"
    digest = await _digest_of(registry, name, tmp_path)
    layer = keyless(fulcio, rekor, digest, f"{registry.host}/{name}", email=EMAIL, issuer=ISSUER)
    result = await _copy_signed(registry, name, digest, layer, tmp_path, fulcio, rekor)
    assert result.admitted is not None
    assert result.admitted.by == f"issuer {ISSUER} subject {EMAIL}"
    assert fulcio.start < datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("another subject", "is not for dev@example.com"),
        ("another issuer", "OIDC issuer is 'https://other.example.com'"),
        ("logged after the certificate expired", "was not valid at the Rekor entry's time"),
        ("SET by another Rekor key", "not signed by a trusted Rekor key"),
        ("certificate of another CA", "does not chain to the Fulcio CA"),
        ("no Rekor bundle", "has no Rekor entry"),
        ("Rekor entry of another signature", "Rekor entry is of another signature"),
    ],
)
async def test_keyless_refusals(
    registry: Registry, tmp_path: Path, fulcio: Fulcio, rekor: Rekor, case: str, said: str
) -> None:
    name = "keyless/" + case.replace(" ", "-").lower()
    digest = await _digest_of(registry, name, tmp_path)
    identity = f"{registry.host}/{name}"
    at = fulcio.start + datetime.timedelta(minutes=1)
    kwargs: dict[str, object] = {}
    signer, log = fulcio, rekor
    if case == "another subject":
        kwargs["email"] = "mallory@example.com"
    if case == "another issuer":
        kwargs["issuer"] = "https://other.example.com"
    if case == "logged after the certificate expired":
        kwargs["logged_at"] = at + datetime.timedelta(minutes=11)
    if case == "SET by another Rekor key":
        log = Rekor()
    if case == "certificate of another CA":
        signer = Fulcio()
    layer = keyless(signer, log, digest, identity, at=at, **kwargs)  # type: ignore[arg-type]
    notes = dict(layer.annotations)
    if case == "no Rekor bundle":
        del notes["dev.sigstore.cosign/bundle"]
    if case == "Rekor entry of another signature":
        other = keyless(fulcio, rekor, digest, identity, at=at)
        notes["dev.sigstore.cosign/bundle"] = other.annotations["dev.sigstore.cosign/bundle"]
    altered = SignatureLayer(layer.payload, notes)
    with pytest.raises(mirror.Refused, match="no valid signature") as refused:
        await _copy_signed(registry, name, digest, altered, tmp_path, fulcio, rekor)
    assert said in str(refused.value)
    assert not (tmp_path / "out").exists()


async def test_the_issuer_as_the_first_fulcio_extension_is_read_too(
    registry: Registry, tmp_path: Path, fulcio: Fulcio, rekor: Rekor
) -> None:
    """Older Fulcio certificates carry the issuer raw under 1.3.6.1.4.1.57264.1.1."""
    name = "keyless/v1-issuer"
    digest = await _digest_of(registry, name, tmp_path)
    at = fulcio.start + datetime.timedelta(minutes=2)
    identity = f"{registry.host}/{name}"
    logged_at = at + datetime.timedelta(seconds=5)
    layer = keyless(
        fulcio,
        rekor,
        digest,
        identity,
        email=EMAIL,
        issuer=ISSUER,
        at=at,
        logged_at=logged_at,
        v2=False,
    )
    result = await _copy_signed(registry, name, digest, layer, tmp_path, fulcio, rekor)
    assert result.admitted is not None


async def test_a_keyed_signature_with_a_rekor_key_needs_its_logged_entry(
    registry: Registry, tmp_path: Path, rekor: Rekor
) -> None:
    key = make_key("p384")
    pub = write_public(key, tmp_path / "k.pub")
    (tmp_path / "rekor.pub").write_bytes(rekor.public_pem())
    rule = keyed(pub, identity={"type": "matchRepository"})
    rule[0]["rekorPublicKeyPath"] = str(tmp_path / "rekor.pub")
    policy = load_policy(policy_file(tmp_path / "p.json", {"": rule}))
    for name, logged in (("keyed-rekor/logged", True), ("keyed-rekor/unlogged", False)):
        digest = await _digest_of(registry, name, tmp_path)
        body = payload(digest, f"{registry.host}/{name}")
        raw = sign(key, body)
        notes = {"dev.cosignproject.cosign/signature": base64.b64encode(raw).decode()}
        if logged:
            notes["dev.sigstore.cosign/bundle"] = rekor.bundle(
                raw, public_pem(key), body, 1767225600
            )
        await push_signed(registry.host, name, digest, [SignatureLayer(body, notes)])
        copying = mirror.copy(
            f"docker://{registry.host}/{name}:v1", f"oci:{tmp_path / name}:img", policy=policy
        )
        if logged:
            assert (await copying).admitted is not None
        else:
            with pytest.raises(mirror.Refused, match="has no Rekor entry"):
                await copying


def test_the_bundle_annotation_is_what_cosign_writes(fulcio: Fulcio, rekor: Rekor) -> None:
    """The SET covers the canonical JSON of the entry, keys sorted, no spaces."""
    layer = keyless(fulcio, rekor, "sha256:" + "0" * 64, "r.io/a")
    bundle = json.loads(layer.annotations["dev.sigstore.cosign/bundle"])
    assert set(bundle) == {"SignedEntryTimestamp", "Payload"}
    assert set(bundle["Payload"]) == {"body", "integratedTime", "logIndex", "logID"}
