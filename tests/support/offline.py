"""The `mirror` command on a machine cut off from the world, for tests of where a command
would go: every name lookup is written down, and any name but this machine's own fails at
once as one that does not exist (as a lookup of an unknown name does), so a test neither
reaches the internet nor depends on how fast this machine's resolver gives up.

`python -m tests.support.offline LOOKUPS ARGS…` runs `mirror ARGS…` so; `offline_mirror`
runs it and says what it printed, how long it took and which names it looked up.
"""

from __future__ import annotations

import ipaddress
import os
import runpy
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the names this machine answers for itself
LOCAL_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True)
class OfflineRun:
    """What an offline run of `mirror` did."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    #: every host name looked up, in order (address literals are not looked up)
    lookups: list[str]

    @property
    def lines(self) -> list[str]:
        """The non-empty lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def offline_mirror(*args: str, cwd: Path, timeout: float = 60) -> OfflineRun:
    """Run `mirror ARGS` in `cwd` with name lookups answered here (see the module)."""
    log = cwd / ".lookups"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.offline", str(log), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(),
    )
    seconds = time.monotonic() - started
    lookups = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return OfflineRun(proc.returncode, proc.stdout, proc.stderr, seconds, lookups)


def _env() -> dict[str, str]:
    """This environment, with the checkout importable from any working directory."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _answered_here(log: Path) -> Any:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or _is_address(str(name)):
            return real(host, *args, **kwargs)
        with open(log, "a") as f:
            f.write(f"{name}\n")
        if str(name).lower() in LOCAL_NAMES:
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return getaddrinfo


def main(argv: list[str]) -> None:
    """Run `mirror ARGV[1:]` with lookups written to the file ARGV[0] and answered here."""
    socket.getaddrinfo = _answered_here(Path(argv[0]))
    sys.argv = ["mirror", *argv[1:]]
    runpy.run_module("mirror", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
