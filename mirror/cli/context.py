"""Registry options from the global CLI flags, scoped to the registries a command names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from mirror.auth.azure import AZURE_CHINA, AZURE_PUBLIC, AZURE_US_GOVERNMENT, is_acr_host
from mirror.auth.credentials import DockerConfig, parse_creds
from mirror.cli.output import options
from mirror.reference import Reference, RegistryReference
from mirror.registry import RegistryOptions

__all__ = ["AZURE_CLOUDS", "azure_credential", "registry_options"]

#: --azure-cloud: (authority host, ACR audience)
AZURE_CLOUDS = {
    "public": ("login.microsoftonline.com", AZURE_PUBLIC),
    "china": ("login.chinacloudapi.cn", AZURE_CHINA),
    "usgov": ("login.microsoftonline.us", AZURE_US_GOVERNMENT),
}


def azure_credential(cloud: str | None) -> tuple[Any, str | None]:
    """DefaultAzureCredential for the cloud (environment, managed identity, Azure CLI, …).

    With no cloud named, the audience follows each login server's suffix.
    """
    from azure.identity import DefaultAzureCredential  # imported only when ACR is used

    if cloud is None:
        return DefaultAzureCredential(), None
    authority, audience = AZURE_CLOUDS[cloud]
    return DefaultAzureCredential(authority=authority), audience


def registry_options(refs: Iterable[Reference | str]) -> RegistryOptions:
    """Options for a command: TLS/plain-HTTP/credential flags apply to the registries it names."""
    opts = options()
    hosts = frozenset(
        r.registry if isinstance(r, RegistryReference) else str(r)
        for r in refs
        if isinstance(r, RegistryReference | str)
    )
    creds = parse_creds(opts.creds) if opts.creds else None
    if creds is not None and len(hosts) > 1:
        raise click.UsageError("--creds applies to one registry; use the Docker config for several")
    azure = None
    audience = None
    acr_hosts = [h for h in hosts if is_acr_host(h)]
    if acr_hosts and creds is None and not opts.anonymous:
        docker_config = DockerConfig.load()
        if any(docker_config.lookup(h) is None for h in acr_hosts):
            azure, audience = azure_credential(opts.azure_cloud)
    return RegistryOptions(
        use_docker_config=not opts.anonymous,
        azure_credential=azure,
        azure_audience=audience,
        default_credentials=creds,
        plain_http=hosts if opts.plain_http else False,
        insecure=frozenset() if opts.tls_verify else hosts,
        ca_file=opts.ca_file,
        concurrency=opts.concurrency,
        retries=opts.retries,
        chunk_size=opts.chunk_size,
        chunked_upload_threshold=max(4 * opts.chunk_size, 64 * 1024 * 1024),
    )
