"""Progress for long work: rich bars on a terminal, nothing when piped or quiet."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mirror.model import Descriptor

__all__ = ["RichProgress"]


class RichProgress:
    """A ProgressSink drawing one bar per blob in flight on stderr."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def blob_started(self, desc: Descriptor) -> None:
        """Add a bar for the blob."""
        self._tasks[str(desc.digest)] = self._progress.add_task(
            desc.digest.encoded[:12], total=desc.size
        )

    def blob_advanced(self, desc: Descriptor, size: int) -> None:
        """Move the blob's bar."""
        task = self._tasks.get(str(desc.digest))
        if task is not None:
            self._progress.advance(task, size)

    def blob_finished(self, desc: Descriptor, how: str) -> None:
        """Remove the blob's bar and print a line for it."""
        task = self._tasks.pop(str(desc.digest), None)
        if task is not None:
            self._progress.remove_task(task)
        self._progress.console.print(f"{how:>7} {desc.digest.encoded[:12]} ({desc.size} bytes)")
