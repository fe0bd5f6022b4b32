"""A small filesystem of its own (tmpfs), for what a full disk does to a run."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_disk(mount_point: Path, size: str = "5m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `mount_point` (the tests run as root, as CI does);
    unmounted when done. A failing mount fails the test: it never skips."""
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
