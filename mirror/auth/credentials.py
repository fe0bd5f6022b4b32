"""Credentials for one registry, and where they come from: flags or the Docker config."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror.errors import MirrorError

__all__ = ["Credentials", "DockerConfig", "parse_creds"]

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    """What to authenticate with; secrets are hidden from repr so they never reach a log."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)

    @property
    def has_basic(self) -> bool:
        """True when a user name and password are known."""
        return bool(self.username) and self.password is not None


def parse_creds(text: str) -> Credentials:
    """Parse `USER[:PASSWORD]` (the password may contain ':')."""
    user, sep, password = text.partition(":")
    if not user:
        raise MirrorError("credentials need a user name: USER:PASSWORD")
    return Credentials(user, password if sep else "")


class DockerConfig:
    """`~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`): auths and credential helpers."""

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        self.data = data
        self.path = path

    @classmethod
    def load(cls, path: Path | None = None) -> DockerConfig:
        """Read the config file; a missing file is an empty config, a broken one an error."""
        if path is None:
            base = os.environ.get("DOCKER_CONFIG")
            path = Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls({}, path)
        except (OSError, ValueError) as exc:
            raise MirrorError(f"cannot read Docker config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise MirrorError(f"Docker config {path} is not a JSON object")
        return cls(data, path)

    def lookup(self, registry: str) -> Credentials | None:
        """Credentials for `registry` (a host[:port]; `docker.io` uses Docker Hub's key)."""
        helpers = self.data.get("credHelpers") or {}
        helper = helpers.get(registry) if isinstance(helpers, dict) else None
        if helper is None and registry == "docker.io" and isinstance(helpers, dict):
            helper = helpers.get("index.docker.io")
        if helper is None:
            helper = self.data.get("credsStore")
        if isinstance(helper, str) and helper:
            found = _run_helper(helper, _server_url(registry))
            if found is not None:
                return found
        auths = self.data.get("auths") or {}
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if _host_of(key) == _host_of(_server_url(registry)) and isinstance(entry, dict):
                return _from_auth_entry(entry, key, self.path)
        return None


def _server_url(registry: str) -> str:
    return DOCKER_HUB_KEY if registry == "docker.io" else registry


def _host_of(key: str) -> str:
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def _from_auth_entry(entry: dict[str, Any], key: str, path: Path | None) -> Credentials:
    username, password = entry.get("username"), entry.get("password")
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise MirrorError(f"Docker config {path}: 'auth' for {key} is not base64") from None
    identity = entry.get("identitytoken")
    registry_token = entry.get("registrytoken")
    return Credentials(
        username=username if isinstance(username, str) and username else None,
        password=password if isinstance(password, str) else None,
        identity_token=identity if isinstance(identity, str) and identity else None,
        registry_token=registry_token
        if isinstance(registry_token, str) and registry_token
        else None,
    )


#: a credential helper's name: `docker-credential-NAME` is looked up on PATH, never a path
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _run_helper(helper: str, server_url: str) -> Credentials | None:
    if not _HELPER_NAME.fullmatch(helper) or ".." in helper:
        raise MirrorError(
            f"credential helper {helper[:80]!r} is not a helper name (letters, digits, '.', "
            "'_', '-'): refusing to run it"
        )
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        raise MirrorError(f"credential helper docker-credential-{helper} is not installed")
    proc = subprocess.run(
        [program, "get"], input=server_url, capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise MirrorError(f"credential helper docker-credential-{helper} failed for {server_url}")
    try:
        reply = json.loads(proc.stdout)
        username, secret = reply["Username"], reply["Secret"]
    except (ValueError, KeyError, TypeError):
        raise MirrorError(f"credential helper docker-credential-{helper} gave no JSON") from None
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username=username, password=secret)
