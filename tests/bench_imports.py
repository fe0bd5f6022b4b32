"""What a command's start-up spends on imports, by `python -X importtime`: each module's own
time (its least of several runs, so a busy machine counts less), summed by package (mirror's
by subpackage), largest first.

Run on its own: `python -m tests.bench_imports HOST/REPO:TAG` (an image on a loopback
registry) prints the section docs/benchmarks.md keeps.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from tests.bench_run import mirror_cmd

__all__ = ["import_items", "render_import_items"]


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "mirror" else parts[0]


def import_items(
    args: list[str], env: dict[str, str] | None = None, runs: int = 7
) -> list[tuple[str, float]]:
    """Milliseconds of import time by package for `mirror ARGS`, largest first."""
    least: dict[str, int] = {}
    for _ in range(runs):
        command = mirror_cmd(*args)
        done = subprocess.run(
            [command[0], "-X", "importtime", *command[1:]],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, _, name = line.removeprefix("import time:").split("|")
            module = name.strip()
            least[module] = min(least.get(module, int(own)), int(own))
    by_package: Counter[str] = Counter()
    for module, micros in least.items():
        by_package[_package(module)] += micros
    return [(package, micros / 1000) for package, micros in by_package.most_common()]


def render_import_items(items: list[tuple[str, float]], shown: int = 12) -> list[str]:
    """The report's section on the imports of a command that makes one request."""
    total = sum(ms for _, ms in items)
    mine = sum(ms for package, ms in items if package.startswith("mirror"))
    lines = [
        "## Start-up of a command that makes one request: its imports",
        "",
        "`mirror inspect --raw docker://…` on loopback, by `python -X importtime`: each",
        "module's own time (the least of 7 runs), summed by package (mirror's by subpackage).",
        f"All imports: {total:.0f} ms, mirror's own modules {mine:.0f} ms. Largest first:",
        "",
        "| package | ms | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {package} | {ms:.1f} | {ms / total:.0%} |" for package, ms in items[:shown]]
    lines.append("")
    return lines


if __name__ == "__main__":
    image = sys.argv[1]
    found = import_items(["-q", "inspect", "--raw", f"docker://{image}"])
    print("\n".join(render_import_items(found)))
