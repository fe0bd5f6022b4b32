"""Registry options from the global CLI flags, scoped to the registries a command names.

The registry and sign-in modules are imported when a command asks for its options, not
before: help and usage errors never load the HTTP stack."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.output import options
from mirror.errors import MirrorError
from mirror.oci.reference import Reference, RegistryReference

if TYPE_CHECKING:
    from mirror.auth.credentials import Credentials
    from mirror.registry import RegistryOptions

__all__ = ["azure_credential", "registry_options"]

#: --azure-cloud: its authority host
AZURE_AUTHORITIES = {
    "public": "login.microsoftonline.com",
    "china": "login.chinacloudapi.cn",
    "usgov": "login.microsoftonline.us",
}


def azure_credential(cloud: str | None) -> tuple[Any, str | None]:
    """DefaultAzureCredential for the cloud (environment, managed identity, Azure CLI, …),
    and the cloud's ACR audience. With no cloud named, the audience follows each login
    server's suffix."""
    from azure.identity import DefaultAzureCredential  # imported only when ACR is used

    from mirror.auth.azure import AZURE_CHINA, AZURE_PUBLIC, AZURE_US_GOVERNMENT

    if cloud is None:
        return DefaultAzureCredential(), None
    audiences = {"public": AZURE_PUBLIC, "china": AZURE_CHINA, "usgov": AZURE_US_GOVERNMENT}
    return DefaultAzureCredential(authority=AZURE_AUTHORITIES[cloud]), audiences[cloud]


_HOST_RE = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d+)?")


def credentials_by_host(given: Iterable[str], hosts: frozenset[str]) -> dict[str, Credentials]:
    """`--creds` values to credentials per registry: `HOST=USER:PASSWORD` for HOST, a bare
    `USER:PASSWORD` for the one registry the command names (a usage error otherwise), so no
    credential ever reaches a registry it was not given for."""
    out: dict[str, Credentials] = {}
    for text in given:
        host, sep, pair = text.partition("=")
        if sep and _HOST_RE.fullmatch(host) and ":" in pair:
            out[host] = _creds(pair)
            continue
        if len(hosts) != 1:
            raise click.UsageError(
                f"--creds USER:PASSWORD needs exactly one registry, and this command names "
                f"{len(hosts)}: give --creds HOST=USER:PASSWORD for each"
            )
        out[next(iter(hosts))] = _creds(text)
    return out


def _creds(text: str) -> Credentials:
    from mirror.auth.credentials import parse_creds

    try:
        return parse_creds(text)
    except MirrorError as exc:
        raise click.UsageError(f"--creds: {exc}") from None


def registry_options(refs: Iterable[Reference | str]) -> RegistryOptions:
    """Options for a command: the TLS, plain-HTTP and credential flags are said of the
    registries it names (`--creds HOST=…` of HOST), `--ca-file` of every registry."""
    from mirror.auth.credentials import DockerConfig
    from mirror.auth.sources import AzureAD
    from mirror.hosts import is_acr_host
    from mirror.registry import HostSettings, RegistryOptions

    opts = options()
    hosts = frozenset(
        r.registry if isinstance(r, RegistryReference) else str(r)
        for r in refs
        if isinstance(r, RegistryReference | str)
    )
    creds = credentials_by_host(opts.creds, hosts)
    azure = None
    audience = None
    acr_hosts = [h for h in hosts if is_acr_host(h) and h not in creds]
    if acr_hosts and not opts.anonymous:
        docker_config = DockerConfig.load()
        if any(docker_config.lookup(h) is None for h in acr_hosts):
            azure, audience = azure_credential(opts.azure_cloud)
    named = HostSettings(
        plain_http=True if opts.plain_http else None,
        tls_verify=None if opts.tls_verify else False,
    )
    return RegistryOptions(
        hosts={host: named for host in hosts},
        credentials=creds,
        defaults=HostSettings(ca_file=opts.ca_file),
        use_docker_config=not opts.anonymous,
        sign_in=(AzureAD(azure, audience),) if azure is not None else (),
        token_hosts=frozenset(opts.token_hosts),
        limits=opts.limits,
        concurrency=opts.concurrency,
        retries=opts.retries,
        blob_cache=opts.blob_cache,
        chunk_size=opts.chunk_size,
        chunked_upload_threshold=max(4 * opts.chunk_size, 64 * 1024 * 1024),
    )
