"""The bounds mirror keeps when it reads what others shaped: time, rate, sizes and counts.

Registries, layouts and archives from elsewhere are hostile; each limit here stops one way
they could stall a run or exhaust the machine (docs/threat-model.md lists them with their
options). They are settings of a run, carried by `RegistryOptions.limits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_LIMITS", "TIB", "Limits"]

TIB: Final = 1024**4


@dataclass(frozen=True, kw_only=True)
class Limits:
    """How long to wait and how much to take from a registry, a layout or an archive."""

    #: seconds to open a connection (TCP and TLS)
    connect_timeout: float = 15.0
    #: seconds a reply (its headers, then each stretch of its body) may take to move
    #: `min_rate * stall_timeout` bytes; also the longest wait for a reply's first byte
    stall_timeout: float = 60.0
    #: bytes per second below which a transfer counts as stalled (1 byte per second keeps
    #: a connection open forever: this is what ends it)
    min_rate: int = 1024
    #: the largest blob a descriptor may declare; a larger one is refused before any
    #: byte is fetched or any file made
    max_blob_size: int = TIB
    #: pages and items one listing (tags, catalog, referrers) may run to
    max_list_pages: int = 10_000
    max_list_items: int = 1_000_000


DEFAULT_LIMITS: Final = Limits()
