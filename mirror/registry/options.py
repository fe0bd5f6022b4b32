"""How to talk to registries: TLS, plain HTTP, credentials. Keyword-only, immutable."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mirror.auth.credentials import Credentials
from mirror.auth.sources import (
    Anonymous,
    AzureAD,
    CredentialSource,
    DockerConfigFile,
    GivenCredentials,
)
from mirror.errors import MirrorError
from mirror.hosts import is_acr_host, is_loopback
from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.retry import DEFAULT_RETRIES, RetryPolicy

__all__ = ["RegistryOptions", "is_loopback", "trust_with"]


@functools.cache
def trust_with(ca_file: str) -> ssl.SSLContext:
    """A verifying TLS context that trusts the system's CAs and those of `ca_file` too (made
    once per file: loading a trust store costs tens of milliseconds)."""
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise MirrorError(f"cannot use CA file {ca_file}: {reason}") from None
    return context


@dataclass(frozen=True, kw_only=True)
class RegistryOptions:
    """Connection settings shared by every registry a run talks to.

    `insecure` names registries (host[:port]) whose TLS certificates are not verified;
    `plain_http` names registries spoken to over HTTP (True: every registry). Loopback
    registries fall back to HTTP when they do not speak TLS, as Docker does.
    """

    credentials: dict[str, Credentials] = field(default_factory=dict, repr=False)
    default_credentials: Credentials | None = field(default=None, repr=False)
    docker_config: Path | None = None
    use_docker_config: bool = True
    plain_http: bool | frozenset[str] = False
    insecure: frozenset[str] = frozenset()
    #: a CA bundle trusted, besides the system's, for every registry ...
    ca_file: str | None = None
    #: ... or, for the registries named here, this one instead (host -> PEM file)
    ca_files: dict[str, str] = field(default_factory=dict)
    concurrency: int = 16
    #: cheap requests in flight at once — HEADs, tag lists, blobs up to 1 MiB — not queued
    #: behind the `concurrency` large transfers (requests_per_second still paces them)
    check_concurrency: int = 64
    retries: int = DEFAULT_RETRIES
    chunk_size: int = 16 * 1024 * 1024
    chunked_upload_threshold: int = 64 * 1024 * 1024
    ranged_download_threshold: int = 256 * 1024 * 1024
    ranged_parallel: int = 4
    state_dir: Path | None = None
    #: sign-in sources asked first, in order (e.g. `AzureAD(credential)` for ACR); then the
    #: credentials above, the Docker config, ACR's anonymous grant, anonymous tokens
    sign_in: tuple[CredentialSource, ...] = ()
    #: registries to treat as ACR besides the *.azurecr.io/.cn/.us login servers
    acr: frozenset[str] = frozenset()
    #: requests per second allowed per registry (host -> rate)
    rate_limits: dict[str, float] = field(default_factory=dict)
    #: per registry, the announced budget below which no more manifests are asked for
    rate_limit_reserves: dict[str, int] = field(default_factory=dict)
    user_agent: str = "mirror"
    #: time, rate, size and count bounds on what registries send (mirror.limits)
    limits: Limits = DEFAULT_LIMITS
    #: hosts trusted as token realms for credentials, besides each registry's own site
    token_hosts: frozenset[str] = frozenset()
    #: remember where blobs are across runs (mounts instead of uploads); off: this run only
    blob_cache: bool = True
    #: told of every answer a registry gives: (registry, method, HTTP status) — for metrics
    on_response: Callable[[str, str, int], None] | None = field(
        default=None, compare=False, repr=False
    )

    def is_acr(self, registry: str) -> bool:
        """True when `registry` is an Azure Container Registry (by name or as told)."""
        return registry in self.acr or is_acr_host(registry)

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy for this run."""
        return RetryPolicy(self.retries)

    def _state(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "mirror"

    def upload_state_dir(self) -> Path:
        """Where resumable upload sessions are kept (`$XDG_STATE_HOME/mirror/uploads`)."""
        return self._state() / "uploads"

    def blob_locations_dir(self) -> Path | None:
        """Where blob locations are remembered across runs
        (`$XDG_STATE_HOME/mirror/blob-locations`); None with the memory turned off."""
        return self._state() / "blob-locations" if self.blob_cache else None

    def uses_plain_http(self, registry: str) -> bool:
        """True when `registry` is to be spoken to over HTTP."""
        if isinstance(self.plain_http, bool):
            return self.plain_http
        return registry in self.plain_http

    def ssl_for(self, registry: str) -> ssl.SSLContext | bool:
        """The `ssl` argument for aiohttp: verification on unless `registry` is named insecure."""
        if registry in self.insecure:
            return False
        ca_file = self.ca_files.get(registry, self.ca_file)
        if ca_file:
            return trust_with(ca_file)
        return True

    def credential_sources(self) -> tuple[CredentialSource, ...]:
        """Where sign-ins come from, first match wins: the sources given in `sign_in`, the
        credentials given, the Docker config, ACR's anonymous grant, anonymous."""
        docker = (DockerConfigFile(self.docker_config),) if self.use_docker_config else ()
        return (
            *self.sign_in,
            GivenCredentials(self.credentials, self.default_credentials),
            *docker,
            AzureAD(registries=self.acr),
            Anonymous(),
        )
