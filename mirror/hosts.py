"""Facts about host names that decide where traffic and credentials may go."""

from __future__ import annotations

import ipaddress

__all__ = ["ACR_SUFFIXES", "host_of", "is_acr_host", "is_loopback", "same_site"]

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


def same_site(registry: str, other: str) -> bool:
    """True when host `other` belongs to the registry's own site: the same host, a name under
    it, or a name under its parent domain when that parent is not a bare top-level domain
    (`auth.docker.io` for `registry-1.docker.io`; `gitlab.example.com` for
    `registry.example.com`; never `evil.com` for `registry.example.com`)."""
    mine, theirs = host_of(registry), host_of(other)
    if mine == theirs:
        return True
    if _is_address(mine) or _is_address(theirs):
        return False
    if theirs.endswith("." + mine):
        return True
    parent = mine.partition(".")[2]
    return "." in parent and (theirs == parent or theirs.endswith("." + parent))
