"""Facts about host names that decide where traffic and credentials may go."""

from __future__ import annotations

import functools
import ipaddress

from publicsuffixlist import PublicSuffixList

__all__ = [
    "ACR_SUFFIXES",
    "MULTI_TENANT",
    "host_of",
    "is_acr_host",
    "is_loopback",
    "same_site",
]

#: the login-server suffixes of Azure Container Registries in the public and national clouds
ACR_SUFFIXES = (".azurecr.io", ".azurecr.cn", ".azurecr.us")


def host_of(registry: str) -> str:
    """The host of `host[:port]` or `[v6]:port`, lower-case, without the port."""
    host = registry
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.lower().rstrip(".")


def is_acr_host(registry: str) -> bool:
    """True for ACR login servers of the public and national clouds."""
    return host_of(registry).endswith(ACR_SUFFIXES)


def is_loopback(registry: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    host = host_of(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


#: registry domains shared by many tenants, each a suffix of its own: a host under one of them
#: is a site alone (`attacker.azurecr.io` is not `myreg.azurecr.io`'s site), whatever the
#: Public Suffix List says of the domain (it lists none of these)
MULTI_TENANT = (
    "azurecr.io",
    "azurecr.cn",
    "azurecr.us",
    "pkg.dev",
    "amazonaws.com",
    "amazonaws.com.cn",
    "ocir.io",
)


def _port_of(address: str) -> int | None:
    """The port of `host:port` or `[v6]:port`, None when none is given."""
    if address.startswith("["):
        tail = address[address.index("]") + 1 :]
        return int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else None
    if address.count(":") == 1:
        port = address.rsplit(":", 1)[1]
        return int(port) if port.isdigit() else None
    return None


@functools.cache
def _suffixes() -> PublicSuffixList:
    """The Public Suffix List the package bundles (never fetched), parsed once."""
    return PublicSuffixList()


def _site_of(host: str) -> str:
    """The site of a host name: its registrable domain by the Public Suffix List (private
    domains included), or the host itself under a multi-tenant registry domain."""
    name = host_of(host)
    if any(name == d or name.endswith("." + d) for d in MULTI_TENANT):
        return name
    return _suffixes().privatesuffix(name) or name


def same_site(registry: str, other: str) -> bool:
    """True when `other` (host[:port]) belongs to the registry's own site.

    An IP address is a site with its port (another port of the registry's address is
    another service). A name is the site of its registrable domain by the Public Suffix
    List — `auth.docker.io` for `registry-1.docker.io`, `gitlab.example.com` for
    `registry.example.com`, never `evil.co.uk` for `corp.co.uk` — and a host under a
    multi-tenant registry domain (`*.azurecr.io`, `*.pkg.dev`, `*.amazonaws.com`) is a site
    of its own.
    """
    mine, theirs = host_of(registry), host_of(other)
    if _is_address(mine) or _is_address(theirs):
        return mine == theirs and _same_port(_port_of(registry), _port_of(other))
    if mine == theirs:
        return True
    return _site_of(mine) == _site_of(theirs)


def _same_port(mine: int | None, theirs: int | None) -> bool:
    """Ports equal, a missing one being the web's default (80 or 443)."""
    if mine is None or theirs is None:
        return (mine or theirs) in (None, 80, 443)
    return mine == theirs
