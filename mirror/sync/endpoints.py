"""The endpoints of one sync run: one registry client, one Layout object per directory (and
mode), one pool of blob transfers shared by every image."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from mirror.endpoint import Endpoint
from mirror.layout import Layout
from mirror.layout.index_file import Retention
from mirror.oci.reference import LayoutReference, RegistryReference, parse_reference
from mirror.registry import RegistryClient

__all__ = ["Endpoints"]


class Endpoints:
    """Endpoints shared by every task of a run; layouts close with `stack`."""

    def __init__(self, client: RegistryClient, stack: AsyncExitStack) -> None:
        self.client = client
        self.stack = stack
        self.layouts: dict[tuple[str, bool], Layout] = {}
        #: one pool of blob transfers shared by every image of the run
        self.blob_gate = asyncio.Semaphore(client.options.concurrency)
        self._lock = asyncio.Lock()
        #: per layout directory: the untagged images its repositories keep (the jobs say)
        self._retention: dict[str, Retention] = {}

    def retain(self, path: str, repository: str, keep: int) -> None:
        """Keep `keep` untagged images of `repository` in the layout `path` (the most any
        job writing there asks)."""
        retention = self._retention.setdefault(path, Retention())
        retention.per_repository[repository] = max(
            keep, retention.per_repository.get(repository, 0)
        )

    async def get(self, text: str, *, write: bool = False) -> tuple[Endpoint, str | None]:
        """The endpoint and the tag/name/digest within it for a reference string."""
        ref = parse_reference(text)
        if isinstance(ref, RegistryReference):
            name = str(ref.digest) if ref.digest else ref.tag
            return self.client.repository(ref, writing=write), name
        assert isinstance(ref, LayoutReference)
        async with self._lock:
            key = (ref.path, write)
            if key not in self.layouts:
                layout = await Layout.open(ref.path, create=write, retry=self.client.options.retry)
                layout.retention = self._retention.setdefault(ref.path, Retention())
                self.layouts[key] = await self.stack.enter_async_context(layout)
        return self.layouts[key], ref.ref
