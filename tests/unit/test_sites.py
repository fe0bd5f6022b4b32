"""Which hosts are a registry's own site (issue 25, item 8): by the Public Suffix List, a
multi-tenant registry domain's hosts each a site alone, an IP address a site with its port."""

from __future__ import annotations

import pytest

from mirror.hosts import same_site


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        ("registry-1.docker.io", "auth.docker.io"),
        ("registry.example.com", "gitlab.example.com"),
        ("registry.example.com:5000", "auth.example.com"),
        ("corp.co.uk", "auth.corp.co.uk"),
        ("myreg.azurecr.io", "myreg.azurecr.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("10.1.2.3", "10.1.2.3:443"),
    ],
)
def test_the_registry_s_own_site(registry: str, realm: str) -> None:
    assert same_site(registry, realm)


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        ("corp.co.uk", "evil.co.uk"),  # co.uk is a public suffix
        ("registry.example.com", "evil.com"),
        ("myreg.azurecr.io", "attacker.azurecr.io"),
        ("myreg.azurecr.us", "attacker.azurecr.us"),
        ("us-docker.pkg.dev", "evil.pkg.dev"),
        ("1111.dkr.ecr.us-east-1.amazonaws.com", "2222.dkr.ecr.us-east-1.amazonaws.com"),
        ("app.github.io", "evil.github.io"),  # a private suffix of the list
        ("127.0.0.1:5000", "127.0.0.1:6000"),  # another service on the registry's address
        ("127.0.0.1:5000", "127.0.0.2:5000"),
        ("[::1]:5000", "[::1]:5001"),
    ],
)
def test_a_sibling_site_is_another_site(registry: str, realm: str) -> None:
    assert not same_site(registry, realm)
