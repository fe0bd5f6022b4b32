"""Progress for long work: rich bars on a terminal, nothing when piped or quiet."""

from __future__ import annotations

import logging
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mirror.oci.model import Descriptor
from mirror.support.terminal import printable

__all__ = ["RichProgress"]


class _RetryLine(logging.Handler):
    """Shows the latest "retrying in N s: …" on the progress display."""

    def __init__(self, progress: RichProgress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        """Put the message on the status line."""
        self.progress.status(record.getMessage())


class RichProgress:
    """A ProgressSink drawing an overall line (blobs done of total, bytes, rate), one bar
    per blob in flight, and the latest retry, on stderr."""

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
        self._overall: TaskID | None = None
        self._status: TaskID | None = None
        self._blobs = self._done = 0
        self._retry_line = _RetryLine(self)
        self._retry_logger = logging.getLogger("mirror.retry")
        self._retry_level = self._retry_logger.level

    def __enter__(self) -> RichProgress:
        self._progress.start()
        self._retry_logger.addHandler(self._retry_line)
        if not self._retry_logger.isEnabledFor(logging.INFO):
            self._retry_logger.setLevel(logging.INFO)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._retry_logger.removeHandler(self._retry_line)
        self._retry_logger.setLevel(self._retry_level)
        self._progress.stop()

    def phase(self, message: str) -> None:
        """Show the stage long work is in (unpacking, verifying, packing)."""
        self.status(message)

    def status(self, message: str) -> None:
        """Show one line of news (the stage, or the latest retry) under the bars."""
        text = escape(printable(" ".join(message.split())[:120]))  # it may quote a registry
        if self._status is None:
            self._status = self._progress.add_task(text, total=None)
        else:
            self._progress.update(self._status, description=text)

    def image_planned(self, blobs: int, size: int) -> None:
        """Add this image's blobs and bytes to the overall line."""
        self._blobs += blobs
        if self._overall is None:
            self._overall = self._progress.add_task(self._overall_text(), total=size)
        else:
            total = (self._progress.tasks[self._overall].total or 0) + size
            self._progress.update(self._overall, total=total)
        self._progress.update(self._overall, description=self._overall_text())

    def _overall_text(self) -> str:
        return f"blobs {self._done}/{self._blobs}"

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
        if self._overall is not None:
            self._progress.advance(self._overall, size)

    def blob_finished(self, desc: Descriptor, how: str) -> None:
        """Remove the blob's bar and print a line for it."""
        task = self._tasks.pop(str(desc.digest), None)
        if task is not None:
            self._progress.remove_task(task)
        self._done += 1
        if self._overall is not None:
            if how != "copied":  # nothing streamed: count its bytes as done at once
                self._progress.advance(self._overall, desc.size)
            self._progress.update(self._overall, description=self._overall_text())
        self._progress.console.print(f"{how:>7} {desc.digest.encoded[:12]} ({desc.size} bytes)")
