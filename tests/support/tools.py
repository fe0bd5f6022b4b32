"""Finding and running the real external tools the tests depend on (never skipped)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "layouts"


def fixture_digest(kind: str) -> str:
    """The digest of the image a committed fixture layout holds."""
    index = json.loads((FIXTURES / kind / "index.json").read_bytes())
    return str(index["manifests"][0]["digest"])


def require(binary: str) -> str:
    """The path of `binary`; a missing one fails the test run (it never skips)."""
    found = shutil.which(binary)
    if found is None:
        raise RuntimeError(f"{binary} is not installed: run 'make test', which installs it")
    return found


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; raise with its stderr when `check` fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def mirror(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the installed `mirror` command line in a subprocess."""
    return run(sys.executable, "-m", "mirror", *args, check=check)


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    """Run skopeo with TLS verification off for loopback registries."""
    return run(require("skopeo"), "--insecure-policy", *args)


def umoci(*args: str) -> subprocess.CompletedProcess[str]:
    """Run umoci."""
    return run(require("umoci"), *args)


async def amirror(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `mirror` CLI without blocking the event loop (for in-process scripted servers)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror", *args, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())
