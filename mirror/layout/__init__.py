"""The OCI image layout endpoint: crash-safe writes, cross-process locking, verify and gc."""

from mirror.layout.check import GcReport, Problem, gc, verify
from mirror.layout.store import Layout, LayoutImage

__all__ = ["GcReport", "Layout", "LayoutImage", "Problem", "gc", "verify"]
