"""Where mirror's CPU goes (issue 17): one copy run under cProfile — the event loop's thread
and every worker thread (hashing and file writes run there) — its own time grouped by what
the functions do. Run by `make bench` with the installed package:

    python -m tests.bench_cpu SOURCE DESTINATION   # any two endpoints; prints JSON

Each thread's profiler is timed by that thread's CPU clock, so the seconds are CPU seconds
(a wait costs none) and add up to about the process's CPU. cProfile counts C calls made from
Python (hashing, socket and file calls) exactly, and inflates pure-Python work by its own
cost, so the Python share is an upper bound.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import sys
import time
from concurrent.futures import ThreadPoolExecutor

#: (kind, what a function's pstats name contains) — the first match wins
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting for the network (epoll)", ("'poll' of 'select.epoll'",)),
    ("worker threads waiting for work", ("'get' of '_queue.SimpleQueue'", "_worker")),
    ("hashing (sha256)", ("_hashlib.HASH", "openssl_sha256")),
    ("socket reads", ("'recv' of '_socket", "'recv_into' of '_socket", "_ssl._SSLSocket")),
    ("socket writes", ("'send' of '_socket", "'sendmsg' of '_socket")),
    # aiofiles reads in worker threads through functools.partial, a C call from C that
    # cProfile does not see: its time is the worker's `run`
    (
        "file reads",
        ("posix.read", "posix.pread", "'readinto' of '_io", "'read' of '_io", "thread.py:run"),
    ),
    (
        "file writes and fsync",
        ("posix.write", "posix.pwrite", "posix.fsync", "posix_fadvise", "'write' of '_io"),
    ),
    ("thread hand-offs", ("'acquire' of '_thread", "SimpleQueue", "posix.replace")),
    ("decompression", ("zlib", "zstd")),
)
OTHER = "Python: aiohttp, asyncio and mirror's own code"


def classify(stats: pstats.Stats) -> dict[str, float]:
    """Own time (tottime) per kind, in seconds."""
    out: dict[str, float] = {kind: 0.0 for kind, _ in KINDS}
    out[OTHER] = 0.0
    raw = stats.stats  # type: ignore[attr-defined]
    for (file, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        label = f"{file}:{name}"
        kind = next((k for k, marks in KINDS if any(m in label for m in marks)), OTHER)
        out[kind] += tottime
    return out


def main(source: str, destination: str) -> None:
    """Copy under cProfile (every thread); print wall, CPU and the grouped times as JSON."""
    import mirror  # imported before timing: start-up is measured elsewhere

    workers: list[cProfile.Profile] = []

    def profiled_worker() -> None:
        workers.append(cProfile.Profile(time.thread_time))  # this thread's CPU, not wall
        workers[-1].enable()

    async def copy() -> None:
        pool = ThreadPoolExecutor(initializer=profiled_worker)
        asyncio.get_running_loop().set_default_executor(pool)
        await mirror.copy(source, destination)

    main_thread = cProfile.Profile(time.thread_time)
    wall, cpu = time.perf_counter(), time.process_time()
    main_thread.enable()
    asyncio.run(copy())
    main_thread.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = pstats.Stats(main_thread)
    for worker in workers:
        worker.create_stats()
        stats.add(worker)
    grouped = classify(stats)
    print(json.dumps({"wall": wall, "cpu": cpu, "kinds": grouped}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
