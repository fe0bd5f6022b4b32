"""The registry client: one HTTP session shared by every registry and repository of a run."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import TracebackType

import aiohttp

from mirror.errors import MirrorError
from mirror.oci.reference import DOCKER_HUB, DOCKER_HUB_API, RegistryReference
from mirror.registry.locations import BlobLocations
from mirror.registry.options import RegistryOptions
from mirror.registry.paging import paged_names
from mirror.registry.ratelimit import Budget
from mirror.registry.repository import Repository
from mirror.registry.transport import RegistryTransport

__all__ = ["RegistryClient"]

_log = logging.getLogger("mirror.registry")


class RegistryClient:
    """Opens repositories on any number of registries over one connection pool.

    Use as `async with RegistryClient(options) as client:`.
    """

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options or RegistryOptions()
        self._session: aiohttp.ClientSession | None = None
        self._transports: dict[str, RegistryTransport] = {}
        #: where blobs are in the registries of this run (and, kept, of earlier runs)
        self.locations = BlobLocations(self.options.blob_locations_dir())

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Keep what was learned of blob locations; close the connection pool."""
        try:
            await self.locations.save()
        except (OSError, MirrorError) as exc:  # a memory, not a result: never fail a run
            _log.warning("could not keep blob locations: %s", exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared aiohttp session (created on first use)."""
        if self._session is None:
            per_host = max(8, self.options.concurrency, self.options.check_concurrency)
            connector = aiohttp.TCPConnector(limit=2 * per_host, limit_per_host=per_host)
            limits = self.options.limits
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=limits.connect_timeout,
                sock_connect=limits.connect_timeout,
                sock_read=limits.stall_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False
            )
            # aiohttp sends an idempotent request again by itself after a cut connection,
            # inside one of our tries: a DELETE or a commit's PUT whose first sending acted
            # then finds nothing, and tries multiply. Every repeat is the retry policy's, which
            # knows the answer was lost (tests/unit/test_registry_helpers.py pins the switch).
            self._session._retry_connection = False
        return self._session

    def budgets(self) -> dict[str, Budget]:
        """The rate-limit budget each registry of the run last announced."""
        return {
            registry: transport.budget
            for registry, transport in sorted(self._transports.items())
            if transport.budget is not None
        }

    def transport(self, registry: str) -> RegistryTransport:
        """The transport for `registry` (host[:port] as written in references)."""
        if registry not in self._transports:
            api_host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
            self._transports[registry] = RegistryTransport(
                registry, api_host, self.session, self.options
            )
        return self._transports[registry]

    def repository(self, ref: RegistryReference, *, writing: bool = False) -> Repository:
        """The repository a reference names; `writing` for a copy's destination."""
        return Repository(
            self.transport(ref.registry), ref.repository, writing=writing, locations=self.locations
        )

    async def catalog(self, registry: str, page_size: int = 1000) -> AsyncIterator[str]:
        """Every repository name in `registry` (the Docker catalog API), following pages."""
        async for name in paged_names(
            self.transport(registry),
            f"/v2/_catalog?n={page_size}",
            "repositories",
            scopes=("registry:catalog:*",),
            what=f"catalog of {registry}",
        ):
            yield name
