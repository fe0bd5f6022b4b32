"""Running the `mirror` CLI against hostile input: bounded in time and memory, measured.

The command runs under a small wrapper (`python -m tests.support.bounded CMD…`) that caps
its address space (so a test that fails cannot take the machine down) and reports its peak
resident memory from `wait4`, on the last line of stderr.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass

#: address-space cap for the command: far above what mirror needs, far below the machine
ADDRESS_SPACE = 4 * 1024 * 1024 * 1024
_MARK = "peak-rss-kib "
#: what a run against hostile input may use at the most
MEMORY_MIB = 200


@dataclass(frozen=True)
class Bounded:
    """What a bounded run did."""

    returncode: int
    stdout: str
    stderr: str
    peak_mib: float
    timed_out: bool

    @property
    def lines(self) -> list[str]:
        """The non-empty lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def assert_refused(result: Bounded, *words: str) -> None:
    """Exit 1, one `mirror:` line naming `words`, no traceback, in time, under 200 MB."""
    assert not result.timed_out, result.stderr
    assert result.returncode == 1, result.stderr
    assert len(result.lines) == 1, result.stderr
    assert result.lines[0].startswith("mirror: "), result.stderr
    for word in words:
        assert word in result.lines[0], result.stderr
    assert result.peak_mib < MEMORY_MIB, result.peak_mib


def _command(args: tuple[str, ...], file_size: int | None = None) -> list[str]:
    cap = [f"--file-size={file_size}"] if file_size else []
    wrapper = [sys.executable, "-m", "tests.support.bounded", *cap]
    return [*wrapper, sys.executable, "-m", "mirror", *args]


def _result(code: int, out: bytes, err: bytes, timed_out: bool) -> Bounded:
    text = err.decode(errors="replace")
    peak = 0.0
    head, _, last = text.rstrip("\n").rpartition("\n")
    if last.startswith(_MARK):
        peak, text = int(last[len(_MARK) :]) / 1024, head + "\n" if head else ""
    return Bounded(code, out.decode(errors="replace"), text, peak, timed_out)


def bounded_mirror(
    *args: str,
    timeout: float = 60,
    file_size: int | None = None,
    env: dict[str, str] | None = None,
) -> Bounded:
    """Run `mirror ARGS` with the memory cap (and no file written past `file_size` bytes),
    `env` added to the environment; kill it (and say so) after `timeout` seconds."""
    proc = subprocess.Popen(
        _command(args, file_size),
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return _result(proc.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return _result(proc.returncode, out, err, True)


async def abounded_mirror(*args: str, within: float = 60) -> Bounded:
    """`bounded_mirror` without blocking the event loop (for in-process scripted servers)."""
    proc = await asyncio.create_subprocess_exec(
        *_command(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
        return _result(proc.returncode or 0, out, err, False)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = await proc.communicate()
        return _result(proc.returncode or 0, out, err, True)


def main(argv: list[str]) -> int:
    """Run `argv` capped (`--file-size=N` first: no file written past N bytes, SIGXFSZ
    otherwise); print its peak RSS (KiB) last on stderr; exit with its code."""
    file_size = None
    if argv and argv[0].startswith("--file-size="):
        file_size = int(argv.pop(0).partition("=")[2])

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    child = subprocess.Popen(argv, preexec_fn=limit)
    _, status, usage = os.wait4(child.pid, 0)
    sys.stderr.write(f"\n{_MARK}{usage.ru_maxrss}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
