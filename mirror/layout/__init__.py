"""The OCI image layout endpoint: crash-safe writes, cross-process locking, verify and gc."""

from mirror.layout.check import GcReport, Problem, gc, verify
from mirror.layout.reading import LayoutImage
from mirror.layout.store import Layout

__all__ = ["GcReport", "Layout", "LayoutImage", "Problem", "gc", "verify"]
