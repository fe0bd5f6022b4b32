"""Which credentials a CLI command uses for the registries it names."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from azure.identity import DefaultAzureCredential

from mirror.auth.azure import AZURE_CHINA, default_audience, is_acr_host
from mirror.auth.sources import AzureAD
from mirror.cli.context import registry_options
from mirror.cli.output import Options
from mirror.oci.reference import parse_reference
from mirror.registry import RegistryOptions


def _options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **flags: object) -> RegistryOptions:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    ctx = click.Context(click.Command("x"), obj=Options(**flags))  # type: ignore[arg-type]
    with ctx:
        return registry_options([parse_reference("docker://myreg.azurecr.cn/app:v1")])


def test_acr_login_servers_and_audiences() -> None:
    assert is_acr_host("myreg.azurecr.io")
    assert is_acr_host("myreg.azurecr.us:443")
    assert not is_acr_host("registry.example.com")
    assert default_audience("x.azurecr.cn") == AZURE_CHINA


def test_acr_gets_default_azure_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (azure,) = _options(tmp_path, monkeypatch).sign_in
    assert isinstance(azure, AzureAD)
    assert isinstance(azure.credential, DefaultAzureCredential)
    assert azure.audience is None
    (china,) = _options(tmp_path, monkeypatch, azure_cloud="china").sign_in
    assert isinstance(china, AzureAD)
    assert china.audience == AZURE_CHINA


def test_anonymous_and_explicit_creds_skip_azure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    anonymous = _options(tmp_path, monkeypatch, anonymous=True)
    assert anonymous.sign_in == ()
    assert anonymous.use_docker_config is False
    with_creds = _options(tmp_path, monkeypatch, creds=("admin:pw",))
    assert with_creds.sign_in == ()
