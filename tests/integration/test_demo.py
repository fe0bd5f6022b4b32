"""`make demo` keeps working: it runs end to end and finds every digest equal."""

from __future__ import annotations

import sys

from tests.support.tools import run


def test_demo_runs_end_to_end() -> None:
    result = run(sys.executable, "-m", "tests.demo", timeout=300)
    assert "demo ok: all digests equal" in result.stdout
