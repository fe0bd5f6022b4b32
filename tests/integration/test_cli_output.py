"""Progress appears on a terminal only; piped output is plain text or JSON."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.support.tools import FIXTURES, REPO, mirror


def test_progress_is_drawn_on_a_tty_only(tmp_path: Path) -> None:
    source = f"oci:{FIXTURES / 'multi-arch'}:v1"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "copy", source, f"oci:{tmp_path / 'tty'}:v1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(60) == 0
    os.close(primary)
    assert b"copied" in seen  # one line per blob from the rich progress sink

    piped = mirror("copy", source, f"oci:{tmp_path / 'piped'}:v1")
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert "\x1b[" not in piped.stdout
    as_json = mirror("--json", "copy", source, f"oci:{tmp_path / 'piped'}:v1")
    report = json.loads(as_json.stdout)
    assert report["upToDate"] is True
    assert as_json.stderr == ""
    quiet = mirror("-q", "copy", source, f"oci:{tmp_path / 'quiet'}:v1")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
