"""How to talk to registries: TLS, plain HTTP, credentials. Keyword-only, immutable.

What is said of one registry is one `HostSettings` record (the shape of containerd's
`hosts.toml`); `RegistryOptions.host(registry)` is the one lookup: the registry's record over
the defaults, field by field.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import InitVar, dataclass, field, fields, replace
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

__all__ = ["HostSettings", "RegistryOptions", "is_loopback", "trust_with"]


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
class HostSettings:
    """What is said of one registry, or of every registry as defaults; None: not said here."""

    credentials: Credentials | None = field(default=None, repr=False)
    #: True: spoken to over HTTP (otherwise HTTPS; loopback registries fall back to HTTP when
    #: they do not speak TLS, as Docker does)
    plain_http: bool | None = None
    #: False: the registry's TLS certificate is not verified
    tls_verify: bool | None = None
    #: a CA bundle trusted besides the system's
    ca_file: str | None = None
    #: requests per second allowed
    requests_per_second: float | None = None
    #: the announced request budget below which no more manifests are asked for
    rate_limit_reserve: int | None = None

    def over(self, below: HostSettings) -> HostSettings:
        """These settings where they say something, `below`'s where they do not."""
        said = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(below, **{name: value for name, value in said.items() if value is not None})

    def ssl(self) -> ssl.SSLContext | bool:
        """The `ssl` argument for aiohttp: no verification when `tls_verify` is False, else
        the system's trust plus `ca_file`'s."""
        if self.tls_verify is False:
            return False
        return trust_with(self.ca_file) if self.ca_file else True


NOT_SAID = HostSettings()


@dataclass(frozen=True, kw_only=True)
class RegistryOptions:
    """Connection settings shared by every registry a run talks to.

    `hosts` says what applies to one registry (host[:port]) alone, over `defaults`, which
    apply to every registry; `host(registry)` is the two merged. `credentials` is a shorthand
    for `hosts={host: HostSettings(credentials=…)}` (a host's own record wins).
    """

    hosts: Mapping[str, HostSettings] = field(default_factory=dict)
    defaults: HostSettings = NOT_SAID
    credentials: InitVar[Mapping[str, Credentials] | None] = None
    docker_config: Path | None = None
    use_docker_config: bool = True
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
    #: credentials `host()` gives, the Docker config, ACR's anonymous grant, anonymous tokens
    sign_in: tuple[CredentialSource, ...] = ()
    #: registries to treat as ACR besides the *.azurecr.io/.cn/.us login servers
    acr: frozenset[str] = frozenset()
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
    #: `host()`'s answers, worked out once per registry (every request asks)
    _resolved: dict[str, HostSettings] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self, credentials: Mapping[str, Credentials] | None) -> None:
        if credentials:
            given = {
                host: self.hosts.get(host, NOT_SAID).over(HostSettings(credentials=c))
                for host, c in credentials.items()
            }
            object.__setattr__(self, "hosts", {**self.hosts, **given})

    def host(self, registry: str) -> HostSettings:
        """What applies to `registry` (host[:port]): its own record over the defaults."""
        found = self._resolved.get(registry)
        if found is None:
            found = self._resolved[registry] = self.hosts.get(registry, NOT_SAID).over(
                self.defaults
            )
        return found

    def with_hosts(self, said: Mapping[str, HostSettings]) -> RegistryOptions:
        """These options with `said` of each host over what they said of it before."""
        hosts = {host: s.over(self.hosts.get(host, NOT_SAID)) for host, s in said.items()}
        return replace(self, hosts={**self.hosts, **hosts})

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

    def sync_records_dir(self) -> Path:
        """Where a sync records its registry destinations
        (`$XDG_STATE_HOME/mirror/sync-destinations`)."""
        return self._state() / "sync-destinations"

    def blob_locations_dir(self) -> Path | None:
        """Where blob locations are remembered across runs
        (`$XDG_STATE_HOME/mirror/blob-locations`); None with the memory turned off."""
        return self._state() / "blob-locations" if self.blob_cache else None

    def uses_plain_http(self, registry: str) -> bool:
        """True when `registry` is to be spoken to over HTTP."""
        return self.host(registry).plain_http is True

    def ssl_for(self, registry: str) -> ssl.SSLContext | bool:
        """The `ssl` argument for aiohttp: verification on unless `registry`'s settings say
        `tls_verify=False`."""
        return self.host(registry).ssl()

    def credential_sources(self) -> tuple[CredentialSource, ...]:
        """Where sign-ins come from, first match wins: the sources given in `sign_in`, the
        credentials given, the Docker config, ACR's anonymous grant, anonymous."""
        docker = (DockerConfigFile(self.docker_config),) if self.use_docker_config else ()
        return (
            *self.sign_in,
            GivenCredentials(self._credentials_for),
            *docker,
            AzureAD(registries=self.acr),
            Anonymous(),
        )

    def _credentials_for(self, registry: str) -> Credentials | None:
        return self.host(registry).credentials
