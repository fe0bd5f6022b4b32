"""TLS verification is on by default; --ca-file and --no-tls-verify are the ways around it."""

from __future__ import annotations

import os
import subprocess
import sys
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
    assert refused.stderr.rstrip().endswith(
        "use --ca-file, or --no-tls-verify to skip verification for it"
    )
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


def test_ca_file_adds_to_the_system_trust_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 11: registry A trusted by the system store (SSL_CERT_FILE), registry B by
    --ca-file: a copy from A to B trusts both, as skopeo does."""
    work = tmp_path_factory.mktemp("two-cas")
    ca_a, cert_a, key_a = make_tls_files(work / "a")
    ca_b, cert_b, key_b = make_tls_files(work / "b")
    reg_a = start_registry(work / "reg-a", tls=(cert_a, key_a))
    reg_b = start_registry(work / "reg-b", tls=(cert_b, key_b))
    env = {**os.environ, "SSL_CERT_FILE": str(ca_a)}  # the "system" store trusts A only

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mirror", *args], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    try:
        seeded = run("copy", f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{reg_a.host}/app:v1")
        assert seeded.returncode == 0, seeded.stderr
        both = run(
            "--ca-file", str(ca_b), "copy", f"docker://{reg_a.host}/app:v1",
            f"docker://{reg_b.host}/app:v1",
        )  # fmt: skip
        assert both.returncode == 0, both.stderr
        only_system = run("copy", f"docker://{reg_a.host}/app:v1", f"docker://{reg_b.host}/x:v1")
        assert only_system.returncode == 1
        assert f"TLS certificate of {reg_b.host} is not trusted" in only_system.stderr
    finally:
        reg_a.stop()
        reg_b.stop()


def test_sync_trusts_each_registry_by_its_own_ca_and_the_global_flags(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Issue 11: a sync from a registry with CA A to one with CA B trusts each by the
    `ca_file` its table names (the first one no longer goes to every registry); global flags
    reach a sync's registries unless its configuration says otherwise for one."""
    work = tmp_path_factory.mktemp("sync-cas")
    ca_a, cert_a, key_a = make_tls_files(work / "a")
    ca_b, cert_b, key_b = make_tls_files(work / "b")
    reg_a = start_registry(work / "reg-a", tls=(cert_a, key_a))
    reg_b = start_registry(work / "reg-b", tls=(cert_b, key_b))
    job = f'[[jobs]]\nsource = "{reg_a.host}/app"\ndestination = "{reg_b.host}/copy"\n'
    per_registry = work / "per-registry.toml"
    per_registry.write_text(
        f'[registries."{reg_a.host}"]\nca_file = "{ca_a}"\n'
        f'[registries."{reg_b.host}"]\nca_file = "{ca_b}"\n' + job
    )
    global_b = work / "global-b.toml"
    global_b.write_text(f'[registries."{reg_a.host}"]\nca_file = "{ca_a}"\n' + job)
    bare = work / "bare.toml"
    bare.write_text(job)
    try:
        seeded = mirror("--ca-file", str(ca_a), "copy", f"oci:{FIXTURES / 'oci-single'}:v1",
                        f"docker://{reg_a.host}/app:v1")  # fmt: skip
        assert seeded.returncode == 0, seeded.stderr
        first = mirror("sync", str(per_registry))
        assert first.returncode == 0, first.stderr
        assert mirror("sync", str(global_b)).returncode == 1  # B is trusted by nothing
        with_flag = mirror("--ca-file", str(ca_b), "sync", str(global_b))
        assert with_flag.returncode == 0, with_flag.stderr
        unverified = mirror("--no-tls-verify", "sync", str(bare))
        assert unverified.returncode == 0, unverified.stderr
    finally:
        reg_a.stop()
        reg_b.stop()
