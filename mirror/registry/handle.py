"""A repository as its blob transfers see it: `RepositoryHandle`, which a `Repository` holds
and hands to `download.py` and `upload.py` (as go-containerregistry's `remote.writer` holds
what a push needs), so that neither imports the repository that calls them.

It knows the repository's name and registry, its token scopes, how messages name things in
it, how an upload's Location resolves, its `transport` (whose `request` the transfers send),
and the options, limits and retry policy of the run. Its verbs are one request each: the
operation that calls one decides how it is tried again (`Repository` retries its own,
`upload.py` counts them among an upload's tries).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from yarl import URL

from mirror.errors import RegistryError, TransportError
from mirror.limits import Limits
from mirror.oci.digest import Digest
from mirror.registry.errors import Missing
from mirror.registry.options import RegistryOptions
from mirror.registry.transport import RegistryTransport
from mirror.retry import RetryPolicy
from mirror.support.headers import header_int

__all__ = ["MAX_MIN_CHUNK", "HoldsHandle", "RepositoryHandle"]

#: the largest minimum chunk size a registry may ask for (OCI-Chunk-Min-Length): more is
#: no size a chunk is ever sent in
MAX_MIN_CHUNK = 1024 * 1024 * 1024


@dataclass(frozen=True)
class RepositoryHandle:
    """The repository `name` in the registry behind `transport`, for its transfers."""

    transport: RegistryTransport
    name: str
    #: a copy's destination: every request, reads included, goes with the push token, so
    #: one token serves the whole copy (as skopeo asks)
    writing: bool = False

    @property
    def registry(self) -> str:
        """The registry, host[:port] as written in references."""
        return self.transport.registry

    @property
    def options(self) -> RegistryOptions:
        """The run's registry options."""
        return self.transport.options

    @property
    def limits(self) -> Limits:
        """The bounds on what the registry sends."""
        return self.transport.options.limits

    @property
    def retry(self) -> RetryPolicy:
        """The run's retry policy."""
        return self.transport.retry

    def upload_state_dir(self) -> Path:
        """Where resumable upload sessions are kept."""
        return self.transport.options.upload_state_dir()

    @property
    def pull(self) -> tuple[str, ...]:
        """Token scopes for reading (the push scope when this is a destination)."""
        return self.push if self.writing else (f"repository:{self.name}:pull",)

    @property
    def push(self) -> tuple[str, ...]:
        """Token scopes for writing."""
        return (f"repository:{self.name}:pull,push",)

    def describe(self, kind: str, ref: str) -> str:
        """How messages name something in this repository, e.g. `blob host/repo@sha256:…`."""
        sep = "@" if ref.startswith(("sha256:", "sha512:")) else ":"
        return f"{kind} {self.registry}/{self.name}{sep}{ref}"

    async def absolute(self, location: str) -> URL:
        """An upload Location resolved against the registry (relative or absolute, as given)."""
        base = await self.transport.base()
        return base.join(URL(location, encoded=True))

    async def start_upload(self) -> tuple[str, int]:
        """Open an upload session (one POST): its Location and the registry's minimum chunk
        size."""
        what = f"upload to {self.registry}/{self.name}"
        resp = await self.transport.request(
            "POST",
            f"/v2/{self.name}/blobs/uploads/",
            scopes=self.push,
            what=what,
            ok=(202,),
            headers={"Content-Length": "0"},
        )
        resp.release()
        location = resp.headers.get("Location")
        if not location:
            raise TransportError(f"{what}: no Location given")
        said = resp.headers.get("OCI-Chunk-Min-Length", "0")
        min_chunk = header_int(said, most=MAX_MIN_CHUNK)
        if min_chunk is None:
            raise RegistryError(
                f"{what}: the registry asks for chunks of at least {said[:40]!r} bytes: not a "
                f"size up to {MAX_MIN_CHUNK} bytes"
            )
        return location, min_chunk

    async def blob_size(self, digest: Digest) -> int | None:
        """The size of a blob (one HEAD), or None when the registry does not have it."""
        what = self.describe("blob", str(digest))
        resp = await self.transport.request(
            "HEAD",
            f"/v2/{self.name}/blobs/{Digest(digest)}",
            scopes=self.pull,
            what=what,
            missing=Missing.BLOB,
            ok=(200, 404),
        )
        resp.release()
        if resp.status == 404:
            return None
        if resp.content_length is None:
            raise RegistryError(f"{what}: HEAD gave no Content-Length")
        return resp.content_length

    async def cancel_upload(self, location: str) -> None:
        """Cancel an upload session (one DELETE, best effort as the spec has it: a failure is
        ignored)."""
        what = f"cancel upload to {self.registry}/{self.name}"
        try:
            resp = await self.transport.request(
                "DELETE",
                await self.absolute(location),
                scopes=self.push,
                what=what,
                ok=(200, 202, 204, 404),
            )
            resp.release()
        except Exception:  # noqa: S110 - cancelling is best effort by the spec
            pass


class HoldsHandle(Protocol):
    """What holds a repository handle (a `Repository`)."""

    @property
    def handle(self) -> RepositoryHandle:
        """The repository as its transfers see it."""
        ...
