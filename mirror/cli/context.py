"""Registry options from the global CLI flags, scoped to the registries a command names."""

from __future__ import annotations

from collections.abc import Iterable

import click

from mirror.auth.credentials import parse_creds
from mirror.cli.output import options
from mirror.reference import Reference, RegistryReference
from mirror.registry import RegistryOptions

__all__ = ["registry_options"]


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
    return RegistryOptions(
        default_credentials=creds,
        plain_http=hosts if opts.plain_http else False,
        insecure=frozenset() if opts.tls_verify else hosts,
        ca_file=opts.ca_file,
        concurrency=opts.concurrency,
        retries=opts.retries,
        chunk_size=opts.chunk_size,
        chunked_upload_threshold=max(4 * opts.chunk_size, 64 * 1024 * 1024),
    )
