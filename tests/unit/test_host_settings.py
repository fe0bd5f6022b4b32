"""What applies to one registry: its own `HostSettings` record over the defaults, the sync
configuration's record over the CLI's, field by field."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from mirror.auth.credentials import Credentials
from mirror.auth.sources import GivenCredentials
from mirror.cli.context import registry_options
from mirror.cli.output import Options
from mirror.registry import HostSettings, RegistryOptions
from mirror.sync.config import SyncConfig, parse_config
from mirror.sync.run import options_for


def test_a_record_wins_where_it_says_something_and_none_is_not_said() -> None:
    below = HostSettings(plain_http=True, ca_file="below.pem", requests_per_second=5.0)
    above = HostSettings(plain_http=False, tls_verify=False, credentials=Credentials("u", "p"))
    assert above.over(below) == HostSettings(
        credentials=Credentials("u", "p"),
        plain_http=False,
        tls_verify=False,
        ca_file="below.pem",
        requests_per_second=5.0,
    )
    assert HostSettings().over(below) == below
    assert below.over(HostSettings()) == below


def test_a_host_not_named_gets_the_defaults() -> None:
    defaults = HostSettings(ca_file="all.pem", credentials=Credentials("everyone", "pw"))
    options = RegistryOptions(
        hosts={"named:5000": HostSettings(plain_http=True)}, defaults=defaults
    )
    assert options.host("other:5000") == defaults
    assert options.host("named:5000") == HostSettings(plain_http=True).over(defaults)


def test_the_credentials_shorthand_is_a_host_record() -> None:
    options = RegistryOptions(
        hosts={"a.example": HostSettings(tls_verify=False)},
        credentials={"a.example": Credentials("a", "pw"), "b.example": Credentials("b", "pw")},
    )
    assert options.host("a.example") == HostSettings(
        tls_verify=False, credentials=Credentials("a", "pw")
    )
    assert options.host("b.example") == HostSettings(credentials=Credentials("b", "pw"))
    assert options.host("c.example") == HostSettings()
    assert "pw" not in repr(options)


def _cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: SyncConfig) -> RegistryOptions:
    """What `mirror --plain-http --no-tls-verify --ca-file … --creds b.example=… sync` builds."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    flags = Options(
        plain_http=True,
        tls_verify=False,
        ca_file=str(tmp_path / "cli.pem"),
        creds=("b.example=cli:pw",),
    )
    with click.Context(click.Command("sync"), obj=flags):
        return registry_options(config.hosts())


def test_sync_config_over_the_cli_per_host_over_the_cli_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a.pem").touch()
    config = parse_config(
        {
            "registries": {
                "a.example": {
                    "plain_http": False,
                    "tls_verify": True,
                    "ca_file": str(tmp_path / "a.pem"),
                    "requests_per_second": 5,
                    "rate_limit_reserve": 3,
                    "username_env": "A_USER",
                    "password_env": "A_PASS",
                },
            },
            "jobs": [{"source": "a.example/app", "destination": "b.example/copy"}],
        },
        env={"A_USER": "config", "A_PASS": "pw"},
    )
    options = options_for(config, _cli(monkeypatch, tmp_path, config))
    said_by_config = HostSettings(
        credentials=Credentials("config", "pw"),
        plain_http=False,
        tls_verify=True,
        ca_file=str(tmp_path / "a.pem"),
        requests_per_second=5.0,
        rate_limit_reserve=3,
    )
    assert options.host("a.example") == said_by_config
    assert options.host("b.example") == HostSettings(
        credentials=Credentials("cli", "pw"),
        plain_http=True,
        tls_verify=False,
        ca_file=str(tmp_path / "cli.pem"),
    )
    assert options.host("c.example") == HostSettings(ca_file=str(tmp_path / "cli.pem"))
    assert (options.uses_plain_http("a.example"), options.uses_plain_http("b.example")) == (
        False,
        True,
    )
    assert options.ssl_for("b.example") is False
    (given,) = [s for s in options.credential_sources() if isinstance(s, GivenCredentials)]
    assert given.lookup("a.example") == Credentials("config", "pw")
    assert given.lookup("b.example") == Credentials("cli", "pw")
    assert given.lookup("c.example") is None
