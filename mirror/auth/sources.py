"""Where a registry's sign-in comes from: one small interface, several sources, the first
source with something for a host wins. The transport asks `sign_in`; it knows no source by
name.

    GivenCredentials   credentials handed over per host (`--creds`, sync config), or for all,
                       as a lookup (`RegistryOptions.host`, or a mapping's `get`)
    DockerConfigFile   the Docker config's auths and credential helpers
    AzureAD            ACR's token flows: an Azure AD credential, or the anonymous grant
    Anonymous          no credentials: anonymous bearer tokens where the registry offers them
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from mirror.auth.azure import AzureAuthenticator
from mirror.auth.credentials import Credentials, DockerConfig
from mirror.auth.tokens import Authenticator
from mirror.hosts import is_acr_host
from mirror.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "Anonymous",
    "AzureAD",
    "CredentialSource",
    "DockerConfigFile",
    "GivenCredentials",
    "SignInContext",
    "sign_in",
]


@dataclass(frozen=True)
class SignInContext:
    """What every authenticator needs besides credentials: the HTTP session, the TLS setting
    for the registry, the bounds on replies, and the hosts trusted as token realms."""

    session: aiohttp.ClientSession
    ssl: Any = True
    limits: Limits = DEFAULT_LIMITS
    trusted_hosts: frozenset[str] = frozenset()

    def basic_or_bearer(self, registry: str, credentials: Credentials | None) -> Authenticator:
        """The standard authenticator (Basic, or bearer tokens) with these credentials."""
        return Authenticator(
            registry,
            credentials,
            self.session,
            self.ssl,
            limits=self.limits,
            trusted_hosts=self.trusted_hosts,
        )


class CredentialSource(Protocol):
    """A place sign-ins come from."""

    def authenticator(self, registry: str, context: SignInContext) -> Authenticator | None:
        """How to sign in to `registry` with what this source holds, or None (ask the next)."""
        ...


@dataclass(frozen=True)
class GivenCredentials:
    """Credentials handed over: `lookup(host)` gives those for a host, or None."""

    lookup: Callable[[str], Credentials | None] = field(repr=False)

    def authenticator(self, registry: str, context: SignInContext) -> Authenticator | None:
        """Basic or bearer sign-in with the credentials given for `registry`, if any."""
        credentials = self.lookup(registry)
        return None if credentials is None else context.basic_or_bearer(registry, credentials)


@dataclass(frozen=True)
class DockerConfigFile:
    """The Docker config (`$DOCKER_CONFIG/config.json` or `path`) and its helpers."""

    path: Path | None = None

    def authenticator(self, registry: str, context: SignInContext) -> Authenticator | None:
        """Basic or bearer sign-in with what the Docker config holds for `registry`, if any."""
        credentials = DockerConfig.load(self.path).lookup(registry)
        return None if credentials is None else context.basic_or_bearer(registry, credentials)


@dataclass(frozen=True)
class AzureAD:
    """ACR's sign-in for ACR login servers (and the hosts in `registries`): an Azure AD
    credential exchanged for ACR tokens, or, with no credential, ACR's anonymous grant."""

    credential: Any = field(default=None, repr=False)
    #: the Azure AD audience; by default the one of the login server's cloud
    audience: str | None = None
    #: hosts to treat as ACR besides the *.azurecr.io/.cn/.us login servers
    registries: frozenset[str] = frozenset()

    def authenticator(self, registry: str, context: SignInContext) -> Authenticator | None:
        """ACR's token flow for an ACR registry; None for any other."""
        if registry not in self.registries and not is_acr_host(registry):
            return None
        return AzureAuthenticator(
            registry,
            self.credential,
            context.session,
            context.ssl,
            audience=self.audience,
            limits=context.limits,
        )


@dataclass(frozen=True)
class Anonymous:
    """No credentials: anonymous bearer tokens where the registry's challenge offers them."""

    def authenticator(self, registry: str, context: SignInContext) -> Authenticator:
        """Sign-in without credentials."""
        return context.basic_or_bearer(registry, None)


def sign_in(
    registry: str, sources: Sequence[CredentialSource], context: SignInContext
) -> Authenticator:
    """The authenticator of the first source with something for `registry` (anonymous when
    none has)."""
    for source in sources:
        found = source.authenticator(registry, context)
        if found is not None:
            return found
    return Anonymous().authenticator(registry, context)
