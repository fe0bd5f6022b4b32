"""Growth (issue 17): a no-op sync of 20, 200 and 2,000 tags (10 per repository, so 2, 20 and
200 repositories) from a loopback registry. For each size: the time per tag and the peak
RSS of the re-run; both must stay flat (the largest size no more than 1.2x the per-tag time
of the middle one, RSS under 150 MB).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from tests.bench_run import mirror_cmd, timed
from tests.support.registry import Registry, start_registry
from tests.support.tags import many_tags

TAGS_PER_REPOSITORY = 10
SIZES = (20, 200, 2000)


@dataclass(frozen=True)
class GrowthRow:
    """A size's no-op re-run: median seconds, per tag, and the largest peak RSS seen."""

    tags: int
    seconds: float
    peak_rss_mb: float

    @property
    def per_tag_ms(self) -> float:
        """Milliseconds per tag."""
        return 1000 * self.seconds / self.tags


def profile(
    work: Path, source: Registry, repeat: int, registries: list[Registry], env: dict[str, str]
) -> list[GrowthRow]:
    """Seed each size, sync it once, then time `repeat` no-op re-runs."""
    rows = []
    target = start_registry(work / "growth-target")
    registries.append(target)
    for size in SIZES:
        prefix = f"grow{size}"
        many_tags(source.host, size // TAGS_PER_REPOSITORY, TAGS_PER_REPOSITORY, prefix)
        config = work / f"growth-{size}.toml"
        config.write_text(
            f'[[jobs]]\nregistry = "{source.host}"\ninclude = ["{prefix}/*"]\n'
            f'destination = "{target.host}/copy"\n'
        )
        command = mirror_cmd("sync", str(config))
        timed(command, env)  # the first run copies everything
        runs = [timed(command, env) for _ in range(repeat)]
        rows.append(
            GrowthRow(
                size,
                statistics.median(r.seconds for r in runs),
                max(r.peak_rss_mb for r in runs),
            )
        )
    return rows


def render(rows: list[GrowthRow]) -> list[str]:
    """The Markdown section."""
    lines = [
        "## Growth: a no-op sync of 20, 200 and 2,000 tags",
        "",
        f"{TAGS_PER_REPOSITORY} tags per repository (2, 20 and 200 repositories), every manifest "
        "different, from a loopback registry already mirrored once; median of the re-runs.",
        "",
        "| tags | seconds | ms per tag | peak RSS MB |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.tags} | {r.seconds:.2f} | {r.per_tag_ms:.2f} | {r.peak_rss_mb:.0f} |" for r in rows
    ]
    middle, largest = rows[-2], rows[-1]
    ratio = largest.per_tag_ms / middle.per_tag_ms
    verdict = "flat" if ratio <= 1.2 and largest.peak_rss_mb < 150 else "NOT flat"
    lines += [
        "",
        f"Per-tag time of {largest.tags} tags against {middle.tags}: {ratio:.2f}x; "
        f"peak RSS {largest.peak_rss_mb:.0f} MB ({verdict}: the bounds are 1.2x and 150 MB).",
        "",
    ]
    return lines
