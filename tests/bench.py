"""`make bench`: mirror against skopeo on the same data, in the same run, on loopback registries.

    (a) pull 1 GiB in 8 layers from a registry into an OCI layout
    (b) push that image from the layout into an empty registry
    (c) pull 300 layers of 32 KiB into an OCI layout
    (d) sync 50 small tags, first run and no-op re-run (and the bare aiohttp floor)
    (e) sync 8 repositories sharing 3 layers of 20 MB (tests/bench_shared.py): bytes uploaded

Each tool runs as a separate process; wall time and peak RSS (wait4) are recorded, best of
`--repeat` runs. The results go to stdout and, with `--write`, to docs/benchmarks.md (with an
SVG chart in docs/benchmarks.svg). For the small-request cases a bare aiohttp client
(tests/bench_floor.py) runs too: the least any Python client needs here.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fixtures.generate import make_big_image
from tests import bench_shared
from tests.support.registry import Registry, start_registry
from tests.support.tools import REPO, require

MiB = 1024 * 1024
DOCS = REPO / "docs"


@dataclass
class Run:
    """One timed process (and the CPU the watched registries spent meanwhile)."""

    seconds: float
    peak_rss_mb: float
    registry_cpu: float = 0.0


def _cpu_seconds(registries: Sequence[Registry]) -> float:
    """User + system CPU seconds the registry processes have used so far."""
    ticks = 0
    for reg in registries:
        fields = Path(f"/proc/{reg.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(
    args: list[str], env: dict[str, str] | None = None, watch: Sequence[Registry] = ()
) -> Run:
    """Run a command to completion; its wall time and peak resident memory."""
    cpu_before = _cpu_seconds(watch)
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(args)}\n{stderr}")
    return Run(elapsed, usage.ru_maxrss / 1024, _cpu_seconds(watch) - cpu_before)


def mirror_cmd(*args: str) -> list[str]:
    """The mirror command line."""
    return [sys.executable, "-m", "mirror", "-q", *args]


def floor_cmd(*args: str) -> list[str]:
    """The bare aiohttp client of tests/bench_floor.py."""
    return [sys.executable, "-m", "tests.bench_floor", *args]


def skopeo_cmd(*args: str) -> list[str]:
    """The skopeo command line (TLS off: loopback HTTP registries)."""
    return [require("skopeo"), "--insecure-policy", "copy", "--quiet", *args]


@dataclass
class Case:
    """One benchmark: its title and each tool's command line."""

    title: str
    mirror: list[str]
    skopeo: list[str]


def best_of(
    command: list[str], repeat: int, reset: Callable[[], None], watch: Sequence[Registry] = ()
) -> Run:
    """The fastest of `repeat` runs of a command (memory: the largest peak seen)."""
    runs = []
    for _ in range(repeat):
        reset()
        runs.append(timed(command, watch=watch))
    fastest = min(runs, key=lambda r: r.seconds)
    return Run(fastest.seconds, max(r.peak_rss_mb for r in runs), fastest.registry_cpu)


def main() -> None:
    """Prepare data, run every case for both tools, print and optionally write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024, help="total of case (a)")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    # byte-compile as `pip install` does, so that no run spends its start-up compiling
    # (an editable install under PYTHONDONTWRITEBYTECODE would compile mirror every time)
    compileall.compile_dir(REPO / "mirror", quiet=1)
    compileall.compile_file(REPO / "tests" / "bench_floor.py", quiet=1)

    work = Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    source_reg = start_registry(work / "source-registry")
    registries: list[Registry] = [source_reg]
    try:
        big, small = work / "big", work / "small"
        print(f"generating {args.size_mib} MiB in 8 layers and 300 x 32 KiB ...", flush=True)
        make_big_image(big, "big", 8, args.size_mib * MiB // 8, seed=1)
        make_big_image(small, "small", 300, 32 * 1024, seed=2)
        host = source_reg.host
        env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
        for layout, ref in ((big, "big"), (small, "small")):
            subprocess.run(
                mirror_cmd("copy", f"oci:{layout}:{ref}", f"docker://{host}/bench/{ref}:v1"),
                check=True,
                env=env,
            )
        out = work / "out"
        push_target: dict[str, Registry] = {}

        def reset_pull() -> None:
            shutil.rmtree(out, ignore_errors=True)

        def reset_push() -> None:
            old = push_target.get("reg")
            if old is not None:
                old.stop()
                shutil.rmtree(old.root, ignore_errors=True)
            fresh = start_registry(work / f"push-{time.monotonic_ns()}")
            registries.append(fresh)
            push_target["reg"] = fresh

        results: list[tuple[str, Run, Run]] = []

        pull_big = Case(
            f"pull {args.size_mib} MiB in 8 layers to a layout",
            mirror_cmd("copy", f"docker://{host}/bench/big:v1", f"oci:{out}:big"),
            skopeo_cmd("--src-tls-verify=false", f"docker://{host}/bench/big:v1", f"oci:{out}:big"),
        )
        results.append(
            (
                pull_big.title,
                best_of(pull_big.mirror, args.repeat, reset_pull),
                best_of(pull_big.skopeo, args.repeat, reset_pull),
            )
        )

        def push_case() -> tuple[Run, Run]:
            runs: dict[str, list[Run]] = {"mirror": [], "skopeo": []}
            for _ in range(args.repeat):
                for tool in ("mirror", "skopeo"):
                    reset_push()
                    target = f"docker://{push_target['reg'].host}/bench/big:v1"
                    cmd = (
                        mirror_cmd("copy", f"oci:{big}:big", target)
                        if tool == "mirror"
                        else skopeo_cmd(
                            "--preserve-digests",
                            "--dest-tls-verify=false",
                            f"oci:{big}:big",
                            target,
                        )
                    )
                    runs[tool].append(timed(cmd, env))
            pick = {
                t: Run(min(r.seconds for r in v), max(r.peak_rss_mb for r in v))
                for t, v in runs.items()
            }
            return pick["mirror"], pick["skopeo"]

        pushed_m, pushed_s = push_case()
        results.append(
            (f"push {args.size_mib} MiB in 8 layers to an empty registry", pushed_m, pushed_s)
        )

        pull_small = Case(
            "pull 300 layers of 32 KiB to a layout",
            mirror_cmd("copy", f"docker://{host}/bench/small:v1", f"oci:{out}:small"),
            skopeo_cmd(
                "--src-tls-verify=false", f"docker://{host}/bench/small:v1", f"oci:{out}:small"
            ),
        )
        results.append(
            (
                pull_small.title,
                best_of(pull_small.mirror, args.repeat, reset_pull, [source_reg]),
                best_of(pull_small.skopeo, args.repeat, reset_pull, [source_reg]),
            )
        )
        floor = floor_cmd("pull", f"{host}/bench/small:v1", str(out))
        floors = {pull_small.title: best_of(floor, args.repeat, reset_pull, [source_reg])}
        memory = memory_profile(work, host, env, out)
        sync_rows = sync_profile(work, source_reg, env, args.repeat, registries, floors)
        shared = bench_shared.profile(work, source_reg, args.repeat, registries, mirror_cmd)
        report = render(results, args, memory, sync_rows, floors)
        report += "\n".join(bench_shared.render(shared)) + "\n"
        print(report)
        if args.write:
            (DOCS / "benchmarks.md").write_text(report)
            (DOCS / "benchmarks.svg").write_text(chart(results))
            print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'benchmarks.svg'}")
    finally:
        for reg in registries:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)


def sync_profile(
    work: Path,
    source: Registry,
    env: dict[str, str],
    repeat: int,
    registries: list[Registry],
    floors: dict[str, Run],
) -> list[tuple[str, Run, Run]]:
    """First sync of 50 small tags and a no-op re-run: mirror sync vs skopeo sync (and the
    bare aiohttp floor of a first run, recorded in `floors`)."""
    host = source.host
    for i in range(50):
        layout = work / f"tag-{i}"
        make_big_image(layout, "t", 1, 16 * 1024, seed=10_000 + i)
        subprocess.run(
            mirror_cmd("copy", f"oci:{layout}:t", f"docker://{host}/bench/many:t{i:02d}"),
            check=True,
            env=env,
        )
        shutil.rmtree(layout)
    best: dict[tuple[str, str], Run] = {}
    for _ in range(repeat):
        for tool in ("mirror", "skopeo", "floor"):
            target = start_registry(work / f"sync-{tool}-{time.monotonic_ns()}")
            registries.append(target)
            if tool == "mirror":
                config = work / "sync.toml"
                config.write_text(
                    f'[registries."{host}"]\nplain_http = true\n'
                    f'[registries."{target.host}"]\nplain_http = true\n'
                    f'[[jobs]]\nsource = "{host}/bench/many"\ndestination = "{target.host}/m"\n'
                )
                cmd = mirror_cmd("sync", str(config))
            elif tool == "floor":
                cmd = floor_cmd("sync", f"{host}/bench/many", f"{target.host}/f/many")
            else:
                cmd = [
                    require("skopeo"),
                    "--insecure-policy",
                    "sync",
                    "--src",
                    "docker",
                    "--dest",
                    "docker",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"{host}/bench/many",
                    f"{target.host}/s",
                ]
            # the bare client has no re-run: it would copy everything again
            for phase in ("first",) if tool == "floor" else ("first", "again"):
                run = timed(cmd, env, [source, target])
                key = (tool, phase)
                if key not in best or run.seconds < best[key].seconds:
                    best[key] = run
            target.stop()
    floors["sync 50 small tags, first run"] = best[("floor", "first")]
    return [
        ("sync 50 small tags, first run", best[("mirror", "first")], best[("skopeo", "first")]),
        ("sync 50 small tags, no-op re-run", best[("mirror", "again")], best[("skopeo", "again")]),
    ]


def memory_profile(work: Path, host: str, env: dict[str, str], out: Path) -> list[tuple[int, Run]]:
    """mirror's peak RSS pulling one blob of growing size: it must stay flat."""
    rows = []
    for mib in (64, 256, 1024):
        layout = work / f"one-{mib}"
        make_big_image(layout, "one", 1, mib * MiB, seed=mib)
        subprocess.run(
            mirror_cmd("copy", f"oci:{layout}:one", f"docker://{host}/bench/one{mib}:v1"),
            check=True,
            env=env,
        )
        shutil.rmtree(layout)
        shutil.rmtree(out, ignore_errors=True)
        run = timed(mirror_cmd("copy", f"docker://{host}/bench/one{mib}:v1", f"oci:{out}:one"))
        rows.append((mib, run))
    shutil.rmtree(out, ignore_errors=True)
    return rows


def _machine() -> str:
    cpus = os.cpu_count()
    skopeo = subprocess.run(
        [require("skopeo"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"{platform.machine()}, {cpus} cores, Python {platform.python_version()}, {skopeo}"


def render(
    results: list[tuple[str, Run, Run]],
    args: argparse.Namespace,
    memory: list[tuple[int, Run]],
    sync_rows: list[tuple[str, Run, Run]],
    floors: dict[str, Run],
) -> str:
    """The Markdown report."""
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`python -m tests.bench --write`): mirror and skopeo on the same",
        "data in the same run, both against Debian's docker-registry on loopback, each tool a",
        f"separate process; best wall time of {args.repeat} runs, largest peak RSS seen.",
        f"Machine: {_machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| case | mirror s | skopeo s | mirror / skopeo | mirror peak RSS MB "
        "| skopeo peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for title, m, s in results + sync_rows:
        lines.append(
            f"| {title} | {m.seconds:.2f} | {s.seconds:.2f} | {m.seconds / s.seconds:.2f}x "
            f"| {m.peak_rss_mb:.0f} | {s.peak_rss_mb:.0f} |"
        )
    lines += [
        "",
        "### What any Python client needs here",
        "",
        "A bare aiohttp client (`tests/bench_floor.py`) making only the requests the case",
        "needs, with no verification, retries, existence checks or layout, at the same",
        "concurrency; the time left is the interpreter's start-up and the registry's work.",
        "Registry CPU is what the registry processes spent during that run (2 cores in all).",
        "",
        "| case | bare aiohttp s | bare / skopeo | mirror / bare "
        "| registry CPU s: mirror run | skopeo run | bare run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for title, m, s in results + sync_rows:
        if title in floors:
            f = floors[title]
            lines.append(
                f"| {title} | {f.seconds:.2f} | {f.seconds / s.seconds:.2f}x "
                f"| {m.seconds / f.seconds:.2f}x | {m.registry_cpu:.2f} | {s.registry_cpu:.2f} "
                f"| {f.registry_cpu:.2f} |"
            )
    lines += [
        "",
        "![wall time, mirror vs skopeo](benchmarks.svg)",
        "",
        "## Memory stays flat as blobs grow",
        "",
        "mirror pulling an image of one blob, registry to layout (blobs of 256 MiB and more",
        "go as parallel ranges):",
        "",
        "| blob | seconds | peak RSS MB |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {mib} MiB | {run.seconds:.2f} | {run.peak_rss_mb:.0f} |" for mib, run in memory]
    lines.append("")
    return "\n".join(lines)


def chart(results: list[tuple[str, Run, Run]]) -> str:
    """A small SVG bar chart of the wall times."""
    width, row, bar = 760, 70, 22
    longest = max(max(m.seconds, s.seconds) for _, m, s in results) or 1.0
    scale = (width - 360) / longest
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{row * len(results) + 40}" font-family="sans-serif" font-size="12">',
        '<text x="10" y="18" font-weight="bold">wall time (s), lower is better</text>',
    ]
    for i, (title, m, s) in enumerate(results):
        y = 34 + i * row
        parts.append(f'<text x="10" y="{y + 14}">{json.dumps(title)[1:-1][:38]}</text>')
        for j, (name, run, colour) in enumerate(
            (("mirror", m, "#2a7ab9"), ("skopeo", s, "#b9652a"))
        ):
            yy = y + 20 + j * (bar + 2) - 18
            w = max(1.0, run.seconds * scale)
            parts.append(
                f'<rect x="250" y="{yy}" width="{w:.1f}" height="{bar - 4}" fill="{colour}"/>'
                f'<text x="{255 + w:.1f}" y="{yy + 13}">{name} {run.seconds:.2f}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
