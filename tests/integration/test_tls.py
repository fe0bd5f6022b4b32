"""TLS verification is on by default; --ca-file and --no-tls-verify are the ways around it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import make_tls_files
from tests.support.registry import Registry, start_registry
from tests.support.tools import FIXTURES, mirror


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """A registry serving HTTPS with a certificate from a private CA; yields it and the CA."""
    work = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_tls_files(work / "certs")
    reg = start_registry(work / "reg", tls=(cert, key))
    yield reg, ca
    reg.stop()


def test_tls_is_verified_unless_told_otherwise(tls_registry: tuple[Registry, Path]) -> None:
    reg, ca = tls_registry
    target = f"docker://{reg.host}/tls/app:v1"
    source = f"oci:{FIXTURES / 'oci-single'}:v1"
    refused = mirror("copy", source, target)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "certificate" in refused.stderr.lower()
    with_ca = mirror("--ca-file", str(ca), "copy", source, target)
    assert with_ca.returncode == 0, with_ca.stderr
    unverified = mirror("--no-tls-verify", "--json", "tags", f"{reg.host}/tls/app")
    assert unverified.returncode == 0, unverified.stderr
    assert "v1" in unverified.stdout
    # HTTPS works, so a loopback registry is not downgraded to HTTP either
    plain = mirror("--plain-http", "tags", f"{reg.host}/tls/app")
    # plain HTTP to a TLS port: the server's 400, in one line (never a downgrade that works)
    assert (plain.returncode, plain.stderr.count("\n")) == (1, 1)
    assert "answered 400" in plain.stderr
