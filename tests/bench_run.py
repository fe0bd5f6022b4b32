"""How `make bench` runs a tool: a separate process, timed, its CPU and peak memory from
wait4, and the CPU the watched servers (registries, delay proxies) spent meanwhile; the
package installed as users get it (`pip install .`, compiled), not the editable checkout."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.support.tools import REPO, require


@dataclass(frozen=True)
class Run:
    """One timed process: wall seconds, peak RSS, its own CPU seconds (user + system), and
    the CPU the watched servers spent during it (serving it: they have no other client)."""

    seconds: float
    peak_rss_mb: float
    servers_cpu: float = 0.0
    cpu: float = 0.0


class Server(Protocol):
    """A registry or a proxy: a process of its own."""

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The server's process."""
        ...


def cpu_seconds(servers: Sequence[Server]) -> float:
    """User + system CPU seconds the server processes have used so far."""
    ticks = 0
    for server in servers:
        stat = Path(f"/proc/{server.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(
    args: list[str],
    env: dict[str, str] | None = None,
    watch: Sequence[Server] = (),
    expect: Collection[int] = (0,),
) -> Run:
    """Run a command to completion; its wall time, peak RSS and CPU, and the CPU the
    `watch`ed servers spent meanwhile. What earlier runs left for the disk to write is
    written first, untimed, so no run pays for another's write-back. An exit code not in
    `expect` stops the benchmark."""
    os.sync()
    cpu_before = cpu_seconds(watch)
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in expect:
        raise SystemExit(f"benchmark command failed: {' '.join(args)}\n{stderr}")
    return Run(
        elapsed,
        usage.ru_maxrss / 1024,
        cpu_seconds(watch) - cpu_before,
        usage.ru_utime + usage.ru_stime,
    )


def median(runs: Sequence[Run]) -> Run:
    """The median of each measure (peak RSS: the largest seen)."""
    return Run(
        statistics.median(r.seconds for r in runs),
        max(r.peak_rss_mb for r in runs),
        statistics.median(r.servers_cpu for r in runs),
        statistics.median(r.cpu for r in runs),
    )


def install(work: Path) -> dict[str, str]:
    """`pip install .` (no dependencies: the virtual environment has them) into a directory
    of its own; the environment that runs that copy. Refuses to go on if the checkout would
    be imported instead."""
    target = work / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(REPO)],
        check=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target), "XDG_STATE_HOME": str(work / "state")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    found = subprocess.run(
        [sys.executable, "-P", "-c", "import mirror; print(mirror.__file__)"],
        env=env, cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not found.startswith(str(target)):
        raise SystemExit(f"the installed copy is not the one imported: {found}")
    return env


def mirror_cmd(*args: str) -> list[str]:
    """The mirror command line; `-P`: the checkout (the working directory) is not put on
    sys.path, so the copy `install` made is the one run."""
    return [sys.executable, "-P", "-m", "mirror", "-q", *args]


def floor_cmd(*args: str) -> list[str]:
    """The bare aiohttp client of tests/bench_floor.py."""
    return [sys.executable, "-m", "tests.bench_floor", *args]


def skopeo_cmd(*args: str) -> list[str]:
    """skopeo copy (TLS off: loopback HTTP registries)."""
    return [require("skopeo"), "--insecure-policy", "copy", "--quiet", *args]


def skopeo_sync_cmd(source: str, destination: str) -> list[str]:
    """skopeo sync of one repository into a registry prefix."""
    return [
        require("skopeo"), "--insecure-policy", "sync", "--src", "docker", "--dest", "docker",
        "--src-tls-verify=false", "--dest-tls-verify=false", source, destination,
    ]  # fmt: skip


def machine() -> str:
    """The machine and tool versions, for the report."""
    skopeo = subprocess.run(
        [require("skopeo"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{skopeo}"
    )
