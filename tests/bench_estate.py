"""`make bench-estate`: a no-op sync of a large estate at a distance (issue 29, target 1).

Two Debian docker-registry processes hold the same estate (`--repos` repositories of `--tags`
tags, every manifest different, written over HTTP), the destination under `copy/`; each sits
behind a TCP delay line of 15 ms each way (a 30 ms round trip, tests/bench_tcp_delay.py), which
counts the HTTP requests that go through. mirror syncs the source's catalog into the
destination twice: the first run has no record of the destination, so it compares every tag
on both sides (as `--verify-destination` does); the second finds its record standing in for
the destination's HEADs. Reported per run: wall time, peak RSS, mirror's CPU, the registries'
and delay lines' CPU, requests per tag. With `--write`, docs/benchmarks-estate.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench_run import Run, cpu_seconds, machine, mirror_cmd, timed
from tests.bench_tcp_delay import TcpDelay, start_tcp_delay
from tests.support.registry import Registry, free_port, start_registry
from tests.support.tags import many_tags
from tests.support.tools import REPO

DOCS = REPO / "docs"
#: the targets of issue 29 for 100,000 tags
TARGET_SECONDS = 90.0
TARGET_RSS_MB = 300.0
#: requests a sync has in flight per registry (check_concurrency) and the round trip
IN_FLIGHT = 64
ROUND_TRIP = 0.03


@dataclass(frozen=True)
class EstateRow:
    """One measured run."""

    title: str
    tags: int
    run: Run
    requests: int
    #: CPU seconds the two delay lines spent meanwhile
    lines_cpu: float

    @property
    def per_tag(self) -> float:
        """Requests per tag, both registries together."""
        return self.requests / self.tags


def _run(
    title: str,
    config: Path,
    registries: dict[str, Registry],
    delay: float,
    work: Path,
    tags: int,
) -> EstateRow:
    """One sync through fresh delay lines on the same ports each run (the registries' names
    stay the same; the counts are this run's alone)."""
    lines: list[TcpDelay] = [
        start_tcp_delay(r.host, delay, work / f"count-{time.monotonic_ns()}", host=front)
        for front, r in registries.items()
    ]
    live = config
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
    try:
        lines_before = cpu_seconds(lines)
        run = timed(mirror_cmd("sync", str(live)), env, watch=list(registries.values()))
        lines_cpu = cpu_seconds(lines) - lines_before
    finally:
        requests = sum(line.stop() for line in lines)
    row = EstateRow(title, tags, run, requests, lines_cpu)
    print(
        f"{title}: {run.seconds:.1f} s, {run.peak_rss_mb:.0f} MB, mirror CPU {run.cpu:.1f} s, "
        f"registries' CPU {run.servers_cpu:.1f} s, delay lines' CPU {lines_cpu:.1f} s, "
        f"{row.per_tag:.2f} requests per tag",
        flush=True,
    )
    return row


def render(rows: list[EstateRow], repos: int, tags: int, seed_seconds: float) -> str:
    """The Markdown page."""
    total = repos * tags
    lines = [
        "# Benchmarks: a no-op sync of a large estate",
        "",
        "Made by `make bench-estate` (`python -m tests.bench_estate`): "
        f"{repos:,} repositories x {tags} tags ({total:,} tags), every manifest different, in two",
        "Debian docker-registry processes (the destination already up to date, both written",
        f"over HTTP in {seed_seconds:.0f} s), each behind a TCP delay line of 15 ms each way",
        "(a 30 ms round trip) that counts the HTTP requests. mirror syncs the source's catalog",
        "into the destination; the first run has no record of the destination and compares",
        "every tag on both sides (what `--verify-destination` does), the second finds the",
        "destination's listing unchanged and its record standing in for the HEADs there",
        "(docs/sync.md). On 2 cores, the registries and the delay lines share the machine",
        "with mirror: their CPU is shown beside mirror's.",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| run | wall s | peak RSS MB | mirror CPU s | registries' CPU s | delay lines' CPU s "
        "| requests per tag |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.title} | {r.run.seconds:.1f} | {r.run.peak_rss_mb:.0f} | {r.run.cpu:.1f} "
        f"| {r.run.servers_cpu:.1f} | {r.lines_cpu:.1f} | {r.per_tag:.2f} |"
        for r in rows
    ]
    lines += [
        "",
        "The machine's least for each run: all the CPU it took (mirror's, the registries', the",
        "delay lines') spread over the 2 cores, or the round trips at 64 requests in flight,",
        "whichever is more:",
        "",
        "| run | least by CPU s | least by round trips s | wall / least |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        by_cpu = (r.run.cpu + r.run.servers_cpu + r.lines_cpu) / (os.cpu_count() or 1)
        by_trips = r.requests / IN_FLIGHT * ROUND_TRIP
        least = max(by_cpu, by_trips)
        lines.append(
            f"| {r.title} | {by_cpu:.1f} | {by_trips:.1f} | {r.run.seconds / least:.2f}x |"
        )
    recorded = rows[-1]
    if total >= 100_000:
        met = recorded.run.seconds <= TARGET_SECONDS and recorded.run.peak_rss_mb <= TARGET_RSS_MB
        lines += [
            "",
            f"Target (issue 29): ≤ {TARGET_SECONDS:.0f} s and ≤ {TARGET_RSS_MB:.0f} MB for "
            f"100,000 tags — {'met' if met else 'NOT met'} by the recorded run.",
        ]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Seed the estate, run the two syncs, print (and write) the page."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.015, help="seconds, each way")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-estate-"))
    registries: list[Registry] = []
    try:
        source = start_registry(work / "source")
        destination = start_registry(work / "destination")
        registries += [source, destination]
        started = time.monotonic()
        many_tags(source.host, args.repos, args.tags, "estate", label="e")
        many_tags(destination.host, args.repos, args.tags, "copy/estate", label="e")
        seed_seconds = time.monotonic() - started
        print(f"estate written in {seed_seconds:.0f} s", flush=True)
        fronts = {f"127.0.0.1:{free_port()}": r for r in (source, destination)}
        front_of = {r.host: front for front, r in fronts.items()}
        config = work / "estate.toml"
        config.write_text(
            "[defaults]\nconcurrency = 16\n"
            f'[[jobs]]\nregistry = "{front_of[source.host]}"\ninclude = ["estate/*"]\n'
            f'destination = "{front_of[destination.host]}/copy"\n'
        )
        total = args.repos * args.tags
        rows = [
            _run("every tag compared (no record yet)", config, fronts, args.delay, work, total),
            _run("the record stands in", config, fronts, args.delay, work, total),
        ]
        page = render(rows, args.repos, args.tags, seed_seconds)
        print(page)
        if args.write:
            (DOCS / "benchmarks-estate.md").write_text(page)
    finally:
        for registry in registries:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
