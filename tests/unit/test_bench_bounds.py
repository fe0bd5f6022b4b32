"""The benchmark's least-possible times: start-up plus the servers' work."""

from __future__ import annotations

import pytest

from tests.bench import (
    Row,
    Startup,
    _all_layers_at_floor_rate,
    _targets,
    least_cpu,
    least_seconds,
    render_help_startup,
)
from tests.bench_growth import GrowthRow
from tests.bench_run import Run

STARTED = Startup(mirror=Run(0.3, 50, cpu=0.28), skopeo=Run(0.02, 40, cpu=0.01))


def _row(
    title: str,
    mirror: Run,
    skopeo: Run,
    section: str = "loopback",
    floor: float | None = None,
    verified: int = 0,
) -> Row:
    return Row(section, title, mirror, skopeo, floor, verified)


def test_least_is_start_up_plus_the_servers_cpu_over_the_cores() -> None:
    row = _row("pull", Run(1.0, 50, servers_cpu=0.8, cpu=0.7), Run(1.2, 50))
    assert least_seconds(row, STARTED, cores=2) == pytest.approx(0.3 + 0.4)


def test_least_of_a_pull_adds_the_cpu_each_stored_byte_costs() -> None:
    row = Row("loopback", "pull", Run(1.0, 50, servers_cpu=0.6), Run(2.0, 50), None, 1000)
    assert least_seconds(row, STARTED, cores=2, cpu_per_byte=0.001) == pytest.approx(
        0.3 + (0.6 + 1.0) / 2
    )


def test_least_cpu_adds_only_the_unavoidable_kinds_to_start_up() -> None:
    profile: dict[str, object] = {
        "kinds": {
            "hashing (sha256)": 0.6,
            "socket reads": 0.2,
            "file writes and fsync": 0.4,
            "Python: aiohttp, asyncio and mirror's own code": 5.0,
        }
    }
    assert least_cpu(profile, STARTED) == pytest.approx(0.28 + 1.2)


def _rows(small_wall: float, small_servers: float) -> list[Row]:
    ordinary = Run(1.0, 50, servers_cpu=0.1, cpu=1.0)
    titles = [
        ("loopback", "pull 1024 MiB in 8 gzip layers to a layout"),
        ("loopback", "push 1024 MiB in 8 gzip layers to an empty registry"),
        ("real", "pull the real-file image"),
        ("real", "push it from a layout to an empty registry"),
        ("real", "copy it registry to registry (streamed)"),
        ("distance", "sync 40 tags, first run (at 30 ms)"),
        ("distance", "sync 40 tags, no-op re-run (at 30 ms)"),
        ("distance", "pull 300 gzip layers of 32 KiB"),
    ]
    rows = [
        _row(t, ordinary, Run(10.0, 50, cpu=10.0), s, 5.0 if s == "real" else None)
        for s, t in titles
    ]
    small = Run(small_wall, 50, servers_cpu=small_servers, cpu=0.5)
    rows.append(_row("pull 300 gzip layers of 32 KiB to a layout", small, Run(1.0, 50)))
    return rows


def _verdict(lines: list[str], target: str) -> str:
    line = next(line for line in lines if line.startswith(f"| {target} |"))
    return line.rstrip(" |").rsplit("| ", 1)[1]


@pytest.mark.parametrize(
    ("wall", "servers", "verdict"),
    [
        (0.4, 0.2, "yes"),
        (0.8, 0.2, "no"),
        (0.8, 0.9, "no: the machine's least is above the bound"),
    ],
)
def test_a_missed_target_is_called_blocked_only_when_the_least_is_above_it(
    wall: float, servers: float, verdict: str
) -> None:
    growth = [GrowthRow(200, 1.0, 50), GrowthRow(2000, 10.0, 55)]
    profile: dict[str, object] = {"kinds": {"hashing (sha256)": 0.1}}
    profiles = {"pulling": profile, "pushing": profile}
    lines = _targets(_rows(wall, servers), STARTED, growth, profiles)
    assert _verdict(lines, "loopback: 300 layers of 32 KiB") == verdict


def test_the_floor_is_scaled_to_every_byte_of_the_image() -> None:
    push = Run(1.3, 50)
    rows = [
        _row("push it", push, Run(1.3, 50), "real", floor=0.8, verified=300_000_000),
        _row("copy it", Run(1.4, 50), Run(1.3, 50), "real", floor=1.0, verified=300_000_000),
    ]
    line = _all_layers_at_floor_rate(rows, STARTED, 200_000_000)[0]
    assert "all 300 MB of the image take 1.35 s" in line  # median floor 0.9 x 300 / 200
    assert "push 1.00 s, copy 1.10 s" in line


def test_help_start_up_is_read_against_its_target_and_the_interpreter() -> None:
    rows = [
        ("the interpreter alone (python -c pass)", Run(0.04, 10, cpu=0.03)),
        ("mirror --help", Run(0.12, 30, cpu=0.1)),
        ("mirror copy --help", Run(0.16, 30, cpu=0.1)),
    ]
    lines = render_help_startup(rows, 7)
    assert "| the interpreter alone (python -c pass) | 0.040 | 0.030 | - | - | - |" in lines
    assert "| mirror --help | 0.120 | 0.100 | 0.080 | 0.15 | yes |" in lines
    assert "| mirror copy --help | 0.160 | 0.100 | 0.120 | 0.15 | no |" in lines
