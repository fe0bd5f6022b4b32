"""containers-policy.json(5) as mirror reads it: scopes by longest match, requirements, and
one error naming the file and the field for anything it does not take."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mirror.oci.reference import parse_registry_reference
from mirror.trust.identity import MatchRepoDigestOrExact, MatchRepository, RemapIdentity
from mirror.trust.policy import (
    AcceptAnything,
    PolicyError,
    Reject,
    SigstoreSigned,
    load_policy,
    parse_policy,
    scopes_of,
)
from tests.support.signing import make_key, public_pem


def _policy(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _key_data() -> str:
    return base64.b64encode(public_pem(make_key())).decode()


def test_scopes_are_listed_most_specific_first_as_containers_image_lists_them() -> None:
    ref = parse_registry_reference("registry.example.com:5000/team/sub/app:v1")
    assert scopes_of(ref) == [
        "registry.example.com:5000/team/sub/app:v1",
        "registry.example.com:5000/team/sub/app",
        "registry.example.com:5000/team/sub",
        "registry.example.com:5000/team",
        "registry.example.com:5000",
        "*.example.com",
        "*.com",
    ]


def test_the_longest_matching_scope_wins_then_the_transport_default_then_default() -> None:
    key = _key_data()
    policy = parse_policy(
        _policy(
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        "registry.example.com/team": [{"type": "insecureAcceptAnything"}],
                        "registry.example.com/team/app": [
                            {"type": "sigstoreSigned", "keyData": key}
                        ],
                        "*.example.org": [{"type": "insecureAcceptAnything"}],
                    }
                },
            }
        ),
        "p.json",
    )

    def scope(text: str) -> str:
        return policy.requirements_for(parse_registry_reference(text))[0]

    assert scope("registry.example.com/team/app:v1") == "registry.example.com/team/app"
    assert scope("registry.example.com/team/other:v1") == "registry.example.com/team"
    assert scope("mirror.example.org/x:v1") == "*.example.org"
    assert scope("elsewhere.io/x:v1") == "default"
    assert policy.requirements_for(None) == ("default", (Reject(),))
    (rule,) = policy.docker["registry.example.com/team/app"]
    assert isinstance(rule, SigstoreSigned)
    assert rule.identity == MatchRepoDigestOrExact()


def test_identities_and_keyless_requirements_are_read(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    from tests.support.signing import Fulcio, Rekor

    fulcio, rekor = Fulcio(), Rekor()
    ca.write_bytes(fulcio.root_pem())
    (tmp_path / "rekor.pub").write_bytes(rekor.public_pem())
    doc = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {
            "docker": {
                "a.example.com": [
                    {
                        "type": "sigstoreSigned",
                        "fulcio": {
                            "caPath": str(ca),
                            "oidcIssuer": "https://issuer.example.com",
                            "subjectEmail": "dev@example.com",
                        },
                        "rekorPublicKeyPath": str(tmp_path / "rekor.pub"),
                        "signedIdentity": {"type": "matchRepository"},
                    }
                ],
                "b.example.com": [
                    {
                        "type": "sigstoreSigned",
                        "keyDatas": [_key_data(), _key_data()],
                        "signedIdentity": {
                            "type": "remapIdentity",
                            "prefix": "b.example.com/mirror",
                            "signedPrefix": "upstream.example.com",
                        },
                    }
                ],
            },
            "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }
    policy = parse_policy(_policy(doc), "p.json")
    assert policy.default == (AcceptAnything(),)
    (keyless,) = policy.docker["a.example.com"]
    assert isinstance(keyless, SigstoreSigned)
    assert keyless.fulcio is not None
    assert keyless.fulcio.email == "dev@example.com"
    assert keyless.identity == MatchRepository()
    (remap,) = policy.docker["b.example.com"]
    assert isinstance(remap, SigstoreSigned)
    assert len(remap.keys) == 2
    assert remap.identity == RemapIdentity("b.example.com/mirror", "upstream.example.com")


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ({"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}, "default[0].type: signedBy"),
        ({"default": [{"type": "whatever"}]}, "unknown requirement type 'whatever'"),
        ({"default": [{"type": "reject", "extra": 1}]}, "default[0].extra: unknown field"),
        ({"default": []}, "default: expected a non-empty list"),
        ({"transports": {}}, "default: missing"),
        ({"default": [{"type": "reject"}], "transports": {"oci": {}}}, "transports.oci"),
        (
            {"default": [{"type": "sigstoreSigned"}]},
            "give exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio",
        ),
        (
            {"default": [{"type": "sigstoreSigned", "keyData": "!!"}]},
            "default[0].keyData: not base64",
        ),
        (
            {"default": [{"type": "sigstoreSigned", "keyData": base64.b64encode(b"x").decode()}]},
            "default[0].keyData: not a PEM public key",
        ),
        (
            {"default": [{"type": "sigstoreSigned", "keyPath": "/nonexistent/key.pub"}]},
            "default[0].keyPath: cannot read /nonexistent/key.pub",
        ),
        (
            {
                "default": [
                    {"type": "sigstoreSigned", "keyData": "KEY", "signedIdentity": {"type": "x"}}
                ]
            },
            "default[0].signedIdentity.type: unknown signedIdentity type 'x'",
        ),
        (
            {
                "default": [
                    {
                        "type": "sigstoreSigned",
                        "keyData": "KEY",
                        "signedIdentity": {"type": "exactReference", "dockerReference": "a.io/b"},
                    }
                ]
            },
            "dockerReference: needs a tag or a digest",
        ),
        ('{"default": [{"type": "reject"}], "default": []}', "duplicate key 'default'"),
    ],
)
def test_what_mirror_does_not_take_is_one_line_naming_the_file_and_the_field(
    doc: object, said: str
) -> None:
    text = doc.encode() if isinstance(doc, str) else _policy(doc)
    text = text.replace(b'"KEY"', json.dumps(_key_data()).encode())
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "/etc/p.json")
    message = str(raised.value)
    assert message.startswith("policy /etc/p.json: ")
    assert said in message
    assert "\n" not in message


def test_fulcio_needs_rekor(tmp_path: Path) -> None:
    from tests.support.signing import Fulcio

    ca = tmp_path / "ca.pem"
    ca.write_bytes(Fulcio().root_pem())
    rule = {
        "type": "sigstoreSigned",
        "fulcio": {"caPath": str(ca), "oidcIssuer": "https://i", "subjectEmail": "a@b"},
    }
    with pytest.raises(PolicyError, match="fulcio needs a Rekor public key"):
        parse_policy(_policy({"default": [rule]}), "p.json")


def test_a_policy_file_is_read_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 * 1024 * 1024))
    with pytest.raises(PolicyError, match="over the"):
        load_policy(big)
    with pytest.raises(PolicyError, match="cannot read it"):
        load_policy(tmp_path / "missing.json")


def test_a_sync_configuration_reads_its_policies_from_its_folder(tmp_path: Path) -> None:
    from mirror.sync.config import ConfigError, load_config

    (tmp_path / "p.json").write_text(json.dumps({"default": [{"type": "reject"}]}))
    (tmp_path / "q.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    config = tmp_path / "sync.toml"
    config.write_text(
        '[defaults]\npolicy = "p.json"\n'
        '[[jobs]]\nname = "a"\nsource = "r.io/a"\ndestination = "m.io"\n'
        '[[jobs]]\nname = "b"\nsource = "r.io/b"\ndestination = "m.io"\npolicy = "q.json"\n'
    )
    loaded = load_config(config)
    assert loaded.policy_of("a") is loaded.policy
    assert loaded.policy_of("b") is not None
    assert loaded.policy_of("b").default == (AcceptAnything(),)  # type: ignore[union-attr]
    assert loaded.carries_attached("a")
    config.write_text(config.read_text().replace('name = "b"', 'name = "a"'))
    with pytest.raises(ConfigError, match=r"jobs\[1\].name: another job is named 'a'"):
        load_config(config)
    config.write_text('[defaults]\npolicy = "missing.json"\n[[jobs]]\nsource = "r.io/a"\n')
    with pytest.raises(ConfigError, match=r"defaults.policy: policy .*missing.json: cannot read"):
        load_config(config, need_destination=False)
