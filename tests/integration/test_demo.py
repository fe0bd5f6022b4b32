"""`make demo` keeps working: it runs end to end and finds every digest equal, and keeps its
state (blob locations of its throwaway registry, upload sessions) in its own folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.tools import REPO


def test_demo_runs_end_to_end_and_leaves_the_users_state_alone(tmp_path: Path) -> None:
    users_state = tmp_path / "users-state"  # where the user's mirror keeps its state
    users_state.mkdir()
    env = {**os.environ, "XDG_STATE_HOME": str(users_state)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "demo ok: all digests equal" in result.stdout, result.stderr
    assert list(users_state.rglob("*")) == []
