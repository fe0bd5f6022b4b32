"""Challenge parsing, credentials from flags, the Docker config and credential helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from mirror.auth import Credentials, DockerConfig, parse_challenges, parse_creds
from mirror.errors import MirrorError


def test_bearer_challenge_with_quoted_and_bare_values() -> None:
    [c] = parse_challenges(
        'Bearer realm="https://auth.example.com/token",service=registry.example.com,'
        'scope="repository:localhost:5000/app:pull,push repository:other:pull"'
    )
    assert (c.scheme, c.realm, c.service) == (
        "bearer",
        "https://auth.example.com/token",
        "registry.example.com",
    )
    assert c.scopes == ["repository:localhost:5000/app:pull,push", "repository:other:pull"]


def test_several_challenges_and_escapes() -> None:
    found = parse_challenges('Basic realm="a \\"quoted\\" realm", Bearer realm=x, error=denied')
    assert [c.scheme for c in found] == ["basic", "bearer"]
    assert found[0].realm == 'a "quoted" realm'
    assert found[1].params == {"realm": "x", "error": "denied"}


def test_creds_flag_keeps_colons_in_the_password() -> None:
    assert parse_creds("bob:pa:ss") == Credentials("bob", "pa:ss")
    with pytest.raises(MirrorError):
        parse_creds(":nouser")


def test_secrets_stay_out_of_repr() -> None:
    text = repr(Credentials("bob", "hunter2", identity_token="idtok", registry_token="regtok"))
    assert "hunter2" not in text
    assert "idtok" not in text
    assert "regtok" not in text


def _config(tmp_path: Path, data: dict[str, object]) -> DockerConfig:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return DockerConfig.load(path)


def test_docker_config_auths(tmp_path: Path) -> None:
    auth = base64.b64encode(b"user:pa:ss").decode()
    config = _config(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth},
                "registry.example.com:5000": {"identitytoken": "refresh-me"},
                "http://token.example.com/v2/": {"registrytoken": "bearer-me"},
            }
        },
    )
    assert config.lookup("docker.io") == Credentials("user", "pa:ss")
    assert config.lookup("registry.example.com:5000") == Credentials(identity_token="refresh-me")
    assert config.lookup("token.example.com") == Credentials(registry_token="bearer-me")
    assert config.lookup("unknown.example.com") is None


def test_missing_and_broken_config(tmp_path: Path) -> None:
    assert DockerConfig.load(tmp_path / "none.json").lookup("x.example.com") is None
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(MirrorError, match="cannot read Docker config"):
        DockerConfig.load(tmp_path / "bad.json")


def _helper(tmp_path: Path, name: str, script: str) -> None:
    path = tmp_path / "bin" / f"docker-credential-{name}"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(
        tmp_path,
        "pass",
        'read url; [ "$1" = get ] || exit 3\n'
        'if [ "$url" = "reg.example.com" ]; then '
        'echo \'{"ServerURL":"reg.example.com","Username":"<token>","Secret":"idt"}\'; '
        "else echo 'credentials not found in native keychain'; exit 1; fi\n",
    )
    _helper(tmp_path, "store", 'read url; echo \'{"Username":"u","Secret":"s"}\'\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    config = _config(tmp_path, {"credHelpers": {"reg.example.com": "pass"}, "credsStore": "store"})
    assert config.lookup("reg.example.com") == Credentials(identity_token="idt")
    assert config.lookup("other.example.com") == Credentials("u", "s")
    only_helper = _config(tmp_path, {"credHelpers": {"x.example.com": "pass"}})
    assert only_helper.lookup("x.example.com") is None
    missing = _config(tmp_path, {"credsStore": "absent"})
    with pytest.raises(MirrorError, match="docker-credential-absent"):
        missing.lookup("x.example.com")
