"""OS errors turned into mirror's typed errors once, where a layout or archive meets the
engine: a full disk in one destination is that destination's failure (`StorageError` naming
it), not an untyped error that ends the whole run."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from mirror.errors import StorageError

__all__ = [
    "Located",
    "is_storage_failure",
    "named_os_errors",
    "storage_boundary",
    "storage_boundary_gen",
    "storage_error",
]

P = ParamSpec("P")
T = TypeVar("T")


class Located(Protocol):
    """A place on disk that names itself in errors (`layout DIR`, `archive FILE`)."""

    where: str


def is_storage_failure(exc: OSError) -> bool:
    """True for a failure of local storage; a network error (some are OSErrors: resets,
    time-outs, the HTTP client's own) is left as it is."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return False
    return not type(exc).__module__.startswith("aiohttp")


def storage_error(where: str, exc: OSError, root: Path | None = None) -> StorageError:
    """`exc` as one line naming `where`, and the file (relative to `root` when under it)."""
    reason = (exc.strerror or str(exc) or type(exc).__name__).strip()
    reason = reason[:1].lower() + reason[1:]
    filename = exc.filename
    if filename is not None:
        name = os.fsdecode(filename)
        if root is not None:
            with contextlib.suppress(ValueError):
                name = str(Path(name).relative_to(root))
        reason = f"{reason} ({name})"
    return StorageError(f"{where}: {reason}")


@contextlib.contextmanager
def named_os_errors(where: str, root: Path | None = None) -> Iterator[None]:
    """Raise a storage failure in the block as `StorageError` naming `where`."""
    try:
        yield
    except OSError as exc:
        if not is_storage_failure(exc):
            raise
        raise storage_error(where, exc, root) from None


L = TypeVar("L", bound=Located)


def storage_boundary(
    method: Callable[Concatenate[L, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[L, P], Coroutine[Any, Any, T]]:
    """Mark an endpoint method as the boundary: a storage failure under it is raised as
    `StorageError` naming the object's `where`."""

    @functools.wraps(method)
    async def wrapper(self: L, *args: P.args, **kwargs: P.kwargs) -> T:
        try:  # not `named_os_errors`: this runs per call on every blob's path
            return await method(self, *args, **kwargs)
        except OSError as exc:
            if not is_storage_failure(exc):
                raise
            raise storage_error(self.where, exc, getattr(self, "path", None)) from None

    return cast(Callable[Concatenate[L, P], Coroutine[Any, Any, T]], wrapper)


def storage_boundary_gen(
    method: Callable[Concatenate[L, P], AsyncGenerator[T, None]],
) -> Callable[Concatenate[L, P], AsyncGenerator[T, None]]:
    """`storage_boundary` for a method that streams (an async generator)."""

    @functools.wraps(method)
    async def wrapper(self: L, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[T, None]:
        with named_os_errors(self.where, getattr(self, "path", None)):
            async for item in method(self, *args, **kwargs):
                yield item

    return cast(Callable[Concatenate[L, P], AsyncGenerator[T, None]], wrapper)
