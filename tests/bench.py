"""`make bench`: mirror against skopeo on data shaped like what registries hold, in the same
run, on loopback registries and on registries 30 ms away (issue 17).

Data (tests/bench_data.py): gzip layers pushed by skopeo as Docker v2 images — 1 GiB in 8
layers, 300 layers of 32 KiB, 40 tags of 3 layers — and an image built by umoci from real
files of the checkout (text, compiled binaries, small files). mirror runs as installed by
`pip install .`; every case alternates the tools and reports medians, and checks that both
wrote the same manifest digest.

    loopback        pull 1 GiB, push 1 GiB, pull 300 small layers, sync 40 tags (first, no-op)
    real files      pull, push, registry-to-registry copy; the floor is the largest layer's
                    upload alone (tests/bench_floor.py upload)
    at a distance   a delay proxy in front of each registry (tests/bench_delay.py): sync 40
                    tags (first, no-op), pull 300 small layers, registry-to-registry 1 GiB
    growth          no-op sync of 20, 200, 2,000 tags (tests/bench_growth.py)
    help start-up   `mirror --help`, `mirror copy --help` and a usage error, which load no
                    transfer stack, against the interpreter's own start
    CPU per byte    CPU-seconds per GiB pulled and pushed; where mirror's CPU goes
                    (tests/bench_cpu.py)
    memory, shared  peak RSS as one blob grows; 8 repositories sharing layers
    serving         8 parallel pulls of 512 MiB from `mirror serve` and from docker-registry
                    (tests/bench_serve.py)

With `--write` the report goes to docs/benchmarks.md and the chart to docs/benchmarks.svg.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests import bench_growth, bench_serve, bench_shared
from tests.bench_data import gzip_image, push_like_docker, real_files_image
from tests.bench_delay import DelayProxy, start_delay_proxy
from tests.bench_run import (
    Run,
    floor_cmd,
    install,
    machine,
    median,
    mirror_cmd,
    skopeo_cmd,
    skopeo_sync_cmd,
    timed,
)
from tests.support.registry import Registry, start_registry
from tests.support.tools import REPO, require

MiB = 1024 * 1024
GiB = 1024 * MiB
DOCS = REPO / "docs"
ACCEPT = ",".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


@dataclass(frozen=True)
class Row:
    """One case: both tools' medians, and the floor where the case has one."""

    section: str
    title: str
    mirror: Run
    skopeo: Run
    floor: float | None = None
    #: what a run must hash: the bytes a pull stores or a push sends
    verified_bytes: int = 0


@dataclass(frozen=True)
class Startup:
    """Each tool's cost of a command that does next to nothing: `inspect --raw` of a manifest
    on loopback (process start, imports, one request, exit); medians."""

    mirror: Run
    skopeo: Run


@dataclass
class Bench:
    """The run's registries, environment and results."""

    work: Path
    env: dict[str, str]
    repeat: int
    distance_repeat: int
    delay: float
    registries: list[Registry] = field(default_factory=list)
    proxies: list[DelayProxy] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    #: tag -> digest of the 40 tags the sync cases copy
    many_digests: dict[str, str] = field(default_factory=dict)
    #: the size of the real-file image's largest layer (the floor's blob)
    largest_layer: int = 0

    def registry(self, name: str) -> Registry:
        """A new empty registry, stopped at the end."""
        reg = start_registry(self.work / f"{name}-{time.monotonic_ns()}")
        self.registries.append(reg)
        return reg

    def far(self, registry: Registry) -> str:
        """`host:port` of a delay proxy in front of `registry`."""
        proxy = start_delay_proxy(registry.host, self.delay)
        self.proxies.append(proxy)
        return proxy.host

    def retire(self, registry: Registry) -> None:
        """Stop a registry a case is done with and delete its storage: the bench's disk and
        page cache do not grow with every run."""
        registry.stop()
        shutil.rmtree(registry.root, ignore_errors=True)

    def live(self) -> list[Registry | DelayProxy]:
        """The registries and proxies running now: the servers a timed run is charged for."""
        servers: list[Registry | DelayProxy] = [*self.registries, *self.proxies]
        return [s for s in servers if s.process.poll() is None]

    def close(self) -> None:
        """Stop every proxy and registry."""
        for proxy in self.proxies:
            proxy.stop()
        for reg in self.registries:
            reg.stop()


def registry_digest(host: str, repository: str, tag: str) -> str:
    """The digest a registry serves for a tag (a HEAD)."""
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(request) as reply:  # noqa: S310
        return str(reply.headers["Docker-Content-Digest"])


def layout_digest(layout: Path, name: str) -> str:
    """The digest a layout lists under a name."""
    index = json.loads((layout / "index.json").read_bytes())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == name:
            return str(entry["digest"])
    raise SystemExit(f"{layout} has no image {name}")


def same_digest(what: str, found: str, expected: str) -> None:
    """Both tools must have done the same work: the same manifest digest out."""
    if found != expected:
        raise SystemExit(f"{what}: wrote {found}, the source holds {expected}")


def pull_case(b: Bench, section: str, title: str, source: str, image: str, expected: str) -> Row:
    """Registry (`host:port`, maybe a delay proxy's) to layout, both tools, the digest
    checked after every run."""
    out = b.work / "out"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    runs: dict[str, list[Run]] = {"mirror": [], "skopeo": []}
    commands = {
        "mirror": mirror_cmd("copy", f"docker://{source}/{image}", f"oci:{out}:x"),
        "skopeo": skopeo_cmd(
            "--preserve-digests", "--src-tls-verify=false", f"docker://{source}/{image}",
            f"oci:{out}:x",
        ),
    }  # fmt: skip
    repeat = b.distance_repeat if section == "distance" else b.repeat
    for _ in range(repeat):
        for tool, command in commands.items():
            reset()
            runs[tool].append(timed(command, b.env, b.live()))
            same_digest(f"{tool}: {title}", layout_digest(out, "x"), expected)
    verified = sum(f.stat().st_size for f in (out / "blobs").rglob("*") if f.is_file())
    reset()
    mirror, skopeo = median(runs["mirror"]), median(runs["skopeo"])
    return Row(section, title, mirror, skopeo, verified_bytes=verified)


def push_case(
    b: Bench,
    section: str,
    title: str,
    src: str,
    expected: str,
    *,
    verified_bytes: int,
    floor_blob: Path | None = None,
) -> Row:
    """`src` (a layout image or a registry image) into an empty registry, fresh for every
    run (behind a delay proxy at a distance); the digest checked after every run. With
    `floor_blob`, each round also times that blob's upload alone (the floor), so that the
    floor is measured under the same conditions as the runs it is compared with."""
    runs: dict[str, list[Run]] = {"mirror": [], "skopeo": []}
    floors: list[float] = []
    repeat = b.distance_repeat if section == "distance" else b.repeat
    for _ in range(repeat):
        if floor_blob is not None:
            floors.append(floor_upload(b, floor_blob))
        for tool in ("mirror", "skopeo"):
            target = b.registry("push")
            host = b.far(target) if section == "distance" else target.host
            dst = f"docker://{host}/bench/pushed:v1"
            command = (
                mirror_cmd("copy", src, dst)
                if tool == "mirror"
                else skopeo_cmd(
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    src,
                    dst,
                )
            )
            runs[tool].append(timed(command, b.env, b.live()))
            written = registry_digest(target.host, "bench/pushed", "v1")
            same_digest(f"{tool}: {title}", written, expected)
            b.retire(target)
    floor = statistics.median(floors) if floors else None
    return Row(
        section, title, median(runs["mirror"]), median(runs["skopeo"]), floor, verified_bytes
    )


def sync_cases(b: Bench, section: str, source_host: str, far: bool) -> list[Row]:
    """40 tags into an empty registry (first run), then again (no-op), both tools."""
    first: dict[str, list[Run]] = {"mirror": [], "skopeo": []}
    again: dict[str, list[Run]] = {"mirror": [], "skopeo": []}
    repeat = b.distance_repeat if far else b.repeat
    for _ in range(repeat):
        for tool in ("mirror", "skopeo"):
            target = b.registry("sync")
            host = b.far(target) if far else target.host
            if tool == "mirror":
                config = b.work / "sync.toml"
                config.write_text(
                    f'[registries."{source_host}"]\nplain_http = true\n'
                    f'[registries."{host}"]\nplain_http = true\n'
                    f'[[jobs]]\nsource = "{source_host}/bench/many"\ndestination = "{host}/m"\n'
                )
                command, written = mirror_cmd("sync", str(config)), "m/bench/many"
            else:
                command = skopeo_sync_cmd(f"{source_host}/bench/many", f"{host}/s")
                written = "s/many"
            first[tool].append(timed(command, b.env, b.live()))
            again[tool].append(timed(command, b.env, b.live()))
            for tag in ("t00", "t39"):
                same_digest(f"{tool}: sync", registry_digest(target.host, written, tag),
                            b.many_digests[tag])  # fmt: skip
            b.retire(target)
    where = f"at {b.delay * 1000:.0f} ms" if far else "loopback"
    return [
        Row(section, f"sync 40 tags, first run ({where})", median(first["mirror"]),
            median(first["skopeo"])),
        Row(section, f"sync 40 tags, no-op re-run ({where})", median(again["mirror"]),
            median(again["skopeo"])),
    ]  # fmt: skip


def startup(b: Bench, image: str) -> Startup:
    """Both tools' `inspect --raw` of a manifest on loopback, taking turns."""
    commands = {
        "mirror": mirror_cmd("inspect", "--raw", f"docker://{image}"),
        "skopeo": [require("skopeo"), "inspect", "--raw", "--tls-verify=false",
                   f"docker://{image}"],
    }  # fmt: skip
    runs: dict[str, list[Run]] = {"mirror": [], "skopeo": []}
    for _ in range(b.repeat):
        for tool, command in commands.items():
            runs[tool].append(timed(command, b.env))
    return Startup(median(runs["mirror"]), median(runs["skopeo"]))


#: commands whose start-up loads no transfer stack (issue 26), each a name and its arguments
HELP_COMMANDS = {
    "mirror --help": ("--help",),
    "mirror copy --help": ("copy", "--help"),
    "a usage error (copy A B --concurency 4)": ("copy", "A", "B", "--concurency", "4"),
}
#: the wall seconds each of them should take at most
HELP_TARGET = 0.15


def help_startup(env: dict[str, str], repeat: int) -> list[tuple[str, Run]]:
    """The start-up of help and of a usage error (exit 2), and of the bare interpreter
    (`python -P -c pass`, which no command goes below): medians, the commands taking turns."""
    commands = {"the interpreter alone (python -c pass)": [sys.executable, "-P", "-c", "pass"]}
    commands |= {name: mirror_cmd(*args) for name, args in HELP_COMMANDS.items()}
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            runs[name].append(timed(command, env, expect=(0, 2)))
    return [(name, median(found)) for name, found in runs.items()]


def render_help_startup(rows: Sequence[tuple[str, Run]], repeat: int) -> list[str]:
    """The report's section on the start-up of help and usage errors (the interpreter's row
    first)."""
    lines = [
        "## Start-up of help and usage errors",
        "",
        "`mirror --help`, a command's `--help` and a usage error load no transfer stack (no",
        "aiohttp, rich or registry client: `tests/integration/test_startup.py` checks what they",
        f"import). Wall seconds from process start to exit and CPU seconds, medians of {repeat}",
        "runs taking turns. Read each against the target, and its part above the interpreter's",
        "own start (the first row, which no command goes below) as what mirror's imports and",
        "click's parsing cost; on a busy machine every row's seconds rise, CPU seconds least.",
        "",
        "| command | seconds | CPU s | above the interpreter s | target s | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    floor = rows[0][1].seconds
    for name, run in rows:
        if name not in HELP_COMMANDS:
            lines.append(f"| {name} | {run.seconds:.3f} | {run.cpu:.3f} | - | - | - |")
            continue
        met = "yes" if run.seconds <= HELP_TARGET else "no"
        lines.append(
            f"| {name} | {run.seconds:.3f} | {run.cpu:.3f} | {run.seconds - floor:.3f} "
            f"| {HELP_TARGET:.2f} | {met} |"
        )
    lines.append("")
    return lines


def floor_upload(b: Bench, blob: Path) -> float:
    """The seconds of the blob's upload alone (one POST, one streamed PUT) into an empty
    registry, by the bare client of tests/bench_floor.py."""
    target = b.registry("floor")
    os.sync()  # as before every timed run
    out = subprocess.run(
        floor_cmd("upload", str(blob), f"{target.host}/floor/blob"),
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    b.retire(target)
    return float(out.strip().splitlines()[-1])


def cpu_profile(b: Bench, source: str, destination: str, size: int) -> dict[str, object]:
    """One copy of `size` bytes under cProfile (tests/bench_cpu.py), with the installed
    package; a layout destination is removed afterwards."""
    env = {**b.env, "PYTHONPATH": f"{b.env['PYTHONPATH']}:{REPO}"}
    text = subprocess.run(
        [sys.executable, "-P", "-m", "tests.bench_cpu", source, destination],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if destination.startswith("oci:"):
        shutil.rmtree(destination.split(":")[1], ignore_errors=True)
    found: dict[str, object] = json.loads(text)
    found["bytes"] = size
    return found


def memory_profile(b: Bench, host: str) -> list[tuple[int, Run]]:
    """mirror's peak RSS pulling one gzip blob of growing size: it must stay flat."""
    rows = []
    out = b.work / "out"
    for mib in (64, 256, 1024):
        layout = b.work / f"one-{mib}"
        gzip_image(layout, "one", 1, mib * MiB, seed=mib)
        push_like_docker(layout, "one", f"{host}/bench/one{mib}:v1")
        shutil.rmtree(layout)
        shutil.rmtree(out, ignore_errors=True)
        pulled = mirror_cmd("copy", f"docker://{host}/bench/one{mib}:v1", f"oci:{out}:one")
        run = timed(pulled, b.env)
        rows.append((mib, run))
    shutil.rmtree(out, ignore_errors=True)
    return rows


def seed(b: Bench, source: Registry, size_mib: int) -> dict[str, object]:
    """Make and push the data; what the cases need to know of it."""
    host, work = source.host, b.work
    print(f"generating {size_mib} MiB in 8 gzip layers, 300 x 32 KiB, 40 tags, real files ...")
    gzip_image(work / "big", "big", 8, size_mib * MiB // 8, seed=1)
    push_like_docker(work / "big", "big", f"{host}/bench/big:v1")
    gzip_image(work / "small", "small", 300, 32 * 1024, seed=2)
    push_like_docker(work / "small", "small", f"{host}/bench/small:v1")
    for i in range(40):
        layout = work / f"tag-{i}"
        gzip_image(layout, "t", 3, 256 * 1024, seed=10_000 + i)
        push_like_docker(layout, "t", f"{host}/bench/many:t{i:02d}")
        shutil.rmtree(layout)
    b.many_digests = {t: registry_digest(host, "bench/many", t) for t in ("t00", "t39")}
    layer_sizes = real_files_image(work / "real", "real", work / "real-work")
    push_like_docker(work / "real", "real", f"{host}/bench/real:v1")
    digests = {n: registry_digest(host, f"bench/{n}", "v1") for n in ("big", "small", "real")}
    return {"layer_sizes": layer_sizes, "digests": digests}


def largest_blob(layout: Path, name: str) -> Path:
    """The file of the largest layer of an image in a layout."""
    digest = layout_digest(layout, name).split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_bytes())
    layer = max(manifest["layers"], key=lambda d: d["size"])
    return layout / "blobs" / "sha256" / str(layer["digest"]).split(":")[1]


def main() -> None:
    """Prepare data, run every case for both tools, print and optionally write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs per case on loopback")
    parser.add_argument("--distance-repeat", type=int, default=3, help="runs per far case")
    parser.add_argument("--delay", type=float, default=0.03, help="seconds per far request")
    parser.add_argument("--size-mib", type=int, default=1024, help="the large image's size")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    b = Bench(work, install(work), args.repeat, args.distance_repeat, args.delay)
    try:
        source = b.registry("source")
        data = seed(b, source, args.size_mib)
        digests: dict[str, str] = data["digests"]  # type: ignore[assignment]
        host, size = source.host, args.size_mib
        # the push cases read the OCI layouts the data was made in (skopeo's oci: transport
        # reads no Docker manifests): their digests are those layouts'
        made = {n: layout_digest(work / n, n) for n in ("big", "real")}
        print("start-up ...", flush=True)
        started = startup(b, f"{host}/bench/small:v1")
        helped = help_startup(b.env, max(args.repeat, 7))
        print("loopback ...", flush=True)
        b.rows.append(
            pull_case(
                b,
                "loopback",
                f"pull {size} MiB in 8 gzip layers to a layout",
                host,
                "bench/big:v1",
                digests["big"],
            )
        )
        b.rows.append(
            push_case(
                b,
                "loopback",
                f"push {size} MiB in 8 gzip layers to an empty registry",
                f"oci:{work / 'big'}:big",
                made["big"],
                verified_bytes=b.rows[0].verified_bytes,
            )
        )
        b.rows.append(
            pull_case(
                b,
                "loopback",
                "pull 300 gzip layers of 32 KiB to a layout",
                host,
                "bench/small:v1",
                digests["small"],
            )
        )
        b.rows += sync_cases(b, "loopback", host, far=False)
        print("real files ...", flush=True)
        largest = largest_blob(work / "real", "real")
        b.largest_layer = largest.stat().st_size
        sizes: list[int] = data["layer_sizes"]  # type: ignore[assignment]
        what = f"{sum(sizes) / 1e6:.0f} MB in {len(sizes)} layers"
        what += f", the largest {max(sizes) / 1e6:.0f} MB"
        b.rows.append(
            pull_case(
                b,
                "real",
                f"pull the real-file image ({what})",
                host,
                "bench/real:v1",
                digests["real"],
            )
        )
        b.rows.append(
            push_case(
                b,
                "real",
                "push it from a layout to an empty registry",
                f"oci:{work / 'real'}:real",
                made["real"],
                verified_bytes=b.rows[-1].verified_bytes,
                floor_blob=largest,
            )
        )
        b.rows.append(
            push_case(
                b,
                "real",
                "copy it registry to registry (streamed)",
                f"docker://{host}/bench/real:v1",
                digests["real"],
                verified_bytes=b.rows[-2].verified_bytes,
                floor_blob=largest,
            )
        )
        print("at a distance ...", flush=True)
        far_source = b.far(source)
        b.rows += sync_cases(b, "distance", far_source, far=True)
        b.rows.append(
            pull_case(
                b,
                "distance",
                "pull 300 gzip layers of 32 KiB",
                far_source,
                "bench/small:v1",
                digests["small"],
            )
        )
        b.rows.append(
            push_case(
                b,
                "distance",
                f"copy {size} MiB registry to registry",
                f"docker://{far_source}/bench/big:v1",
                digests["big"],
                verified_bytes=b.rows[0].verified_bytes,
            )
        )
        print("growth, CPU, memory, shared layers ...", flush=True)
        growth = bench_growth.profile(work, source, 3, b.registries, b.env)
        big_bytes = b.rows[0].verified_bytes
        pull_profile = cpu_profile(
            b, f"docker://{host}/bench/big:v1", f"oci:{work / 'profiled'}:x", big_bytes
        )
        pushed = b.registry("profiled")
        push_profile = cpu_profile(
            b, f"oci:{work / 'big'}:big", f"docker://{pushed.host}/bench/pushed:v1", big_bytes
        )
        b.retire(pushed)
        profiles = {"pulling": pull_profile, "pushing": push_profile}
        memory = memory_profile(b, host)
        shared = bench_shared.profile(work, source, args.repeat, b.registries, mirror_cmd, b.env)
        print("serving ...", flush=True)
        served = bench_serve.profile(work, args.repeat, b.registries, mirror_cmd, b.env)
        report = render(b, args, started, growth, profiles, memory)
        report += "\n".join(render_help_startup(helped, max(args.repeat, 7))) + "\n"
        report += "\n".join(bench_shared.render(shared)) + "\n"
        report += "\n".join(bench_serve.render(served)) + "\n"
        print(report)
        if args.write:
            (DOCS / "benchmarks.md").write_text(report)
            (DOCS / "benchmarks.svg").write_text(chart(b.rows))
            print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'benchmarks.svg'}")
    finally:
        b.close()
        shutil.rmtree(work, ignore_errors=True)


SECTIONS = {
    "loopback": "On loopback",
    "real": "An image of real files",
    "distance": "At a distance",
}


def _table(rows: Sequence[Row], *, floors: bool = False) -> list[str]:
    head = "| case | mirror s | skopeo s | mirror / skopeo | mirror CPU s | skopeo CPU s "
    head += "| CPU ratio | servers' CPU s, mirror / skopeo | mirror RSS MB | skopeo RSS MB |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if floors:
        head += " floor s | mirror / floor |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in rows:
        m, s = r.mirror, r.skopeo
        line = (
            f"| {r.title} | {m.seconds:.2f} | {s.seconds:.2f} | {m.seconds / s.seconds:.2f}x "
            f"| {m.cpu:.2f} | {s.cpu:.2f} | {m.cpu / s.cpu:.2f}x "
            f"| {m.servers_cpu:.2f} / {s.servers_cpu:.2f} | {m.peak_rss_mb:.0f} "
            f"| {s.peak_rss_mb:.0f} |"
        )
        if floors:
            line += f" {r.floor:.2f} | {m.seconds / r.floor:.2f}x |" if r.floor else " - | - |"
        lines.append(line)
    return lines


#: what was tried for the CPU per byte, and what it gave (kept with the generated report)
TRIED = """\
What was tried, measured with this benchmark's cases:

- Cheap requests on their own lane (kept): HEADs and tag listings go 64 at a time per
  registry (`RegistryOptions.check_concurrency`), not behind the 16 transfers; the connection
  pool grows with it. A no-op sync at 30 ms went from one HEAD per tag in turn on each side
  to both HEADs of every tag together.
- Small blobs beside large ones (kept): blobs up to 1 MiB are latency-bound; they take places
  on the wide lane instead of the transfers' 16. 300 layers of 32 KiB at 30 ms: 1.5 s to
  1.2 s; on loopback the same within noise (more connections cost as much as they save).
- Lazy imports (kept): a one-off sync no longer loads prometheus_client and aiohttp's server
  (about 40 ms of start-up). What is left of start-up is mostly aiohttp's own import, which
  builds its default TLS contexts (loading the system CA bundle) at import time.
- Larger socket reads for blob downloads (kept): asyncio's transports read 256 KiB from a
  socket at a time; a download's connection now reads up to 1 MiB
  (`mirror.registry.download.SOCKET_READ`), so a GiB arrives in a quarter of the reads and
  of aiohttp's per-read parsing. Pull of 1 GiB, alternating with skopeo: 2.59 to 2.01
  CPU-seconds, 2.10 to 1.66 s of wall time (medians of 3 runs before, 5 after). 512 KiB gave
  2.11, 2 MiB 2.17, 4 MiB 2.33 (larger buffers cost more in copies than they save in calls).
- Upload chunks (changed): one 219 MB layer alone, medians of 5 alternating runs into a
  fresh registry each: the bare upload 1.33 s, mirror with fixed 16 MiB chunks 1.48, 32 MiB
  1.57, 64 MiB 1.48, one monolithic stream 1.35. Chunks cost about 10 % against one stream
  on loopback, and they are what lets a cut upload resume, so they stay; they now grow from
  16 MiB with what went through, up to 128 MiB (`mirror.registry.upload.MAX_CHUNK`): the
  whole real-file image, medians of 5 alternating in-process runs, push 1.14 to 1.05 s and
  registry-to-registry 1.19 to 1.10 s. Runs vary by a third between rounds (the disk's
  write-back): compare within a round.
- Profiling the 300-small-layers pull: per blob, the time is the kernel's (recv, send,
  epoll) and aiohttp's request machinery; the retry wrapper costs 16 µs per request and the
  per-blob fsync about 0.3 ms spread over worker threads: neither is worth removing.
- Where the 300-small-layers pull waits (measured): on the registry. It spends about
  0.8 CPU-seconds serving mirror's 300 GETs (2.7 ms each; more for skopeo's), on the same
  two cores as mirror; at a distance the delay proxy adds 0.2. The "servers' CPU" column
  shows it for every case, and "Against the targets" turns it into the least time this
  machine allows.
- Writing a batch in a worker thread while the next one arrives (double buffering, not
  kept): pull of 1 GiB 1.45 to 1.44 s, real-file pull 0.72 to 0.70 s, medians of 5
  alternating runs; within noise, so the simpler one-batch-at-a-time write stays. With
  2 MiB batches instead of 4 it was slower (1.57 s).
- Parallel ranges for blobs from 32 or 64 MiB instead of 256 MiB (not kept): the real-file
  pull went from 0.71 to 0.77 s (the parts are re-read to be hashed in order).
- Not dropping written pages (`POSIX_FADV_DONTNEED`, which also starts write-back): pull of
  1 GiB 1.50 to 2.66 s and 1.87 to 3.13 CPU-seconds, since every blob's fsync then waits
  for all of it. Dropping only the last 12 MiB instead of the whole file: the same as now.
- Push and registry-to-registry copy of the real-file image are held by the registry: it
  spends about 4 CPU-seconds per GiB it takes in (the "servers' CPU" column; Debian's
  registry is built with Go 1.19, before Go's sha256 learnt SHA-NI, golang/go#50543), and
  the other layers' uploads share the same two cores with the largest. The registry takes
  the whole image at about the rate it takes the largest layer alone: mirror's push and
  copy, less its start-up, take about the time all the image's bytes take at the floor's
  rate (the line under the real-file table). Less each tool's start-up, mirror's push and
  copy take 0.8 to 0.9 of skopeo's time (table above); with it, about the same: what
  separates them is mirror's start-up. Fewer PATCHes (one of 16 MiB, then the rest in
  one) gave 1.27 to 1.22 s for the push, one monolithic PUT 1.22 too (medians of 7,
  alternating): 4 %, not enough to meet a target, and chunks are what lets an upload
  behind a buffering proxy resume, so they stay.
- Uploads in chunks (blobs of 64 MiB and more) now hash what they send, as single-PUT
  uploads always did: they used to leave the check to the registry's `PUT ?digest=`.
  Pushing 1 GiB costs mirror about 0.6 CPU-seconds more for it (1.26 to 1.83, in
  the event loop's thread), and a registry-to-registry copy hashes on the way too; wall
  time, medians of 7 alternating runs: real-file push 1.27 to 1.28 s, copy 1.33 to 1.35 s.
- What is left: start-up is about 0.3 s for any command that talks to a registry (skopeo's
  is 0.02 s): the interpreter, then importing aiohttp (0.15 to 0.2 s, of which 40 ms is
  building its two default TLS contexts, which load the system CA bundle at import time,
  whether or not TLS is used), asyncio and click; mirror's own modules are about 35 ms.
  sha256 of every byte is 0.6 s per GiB on this CPU (SHA-NI); the kernel's copies into and
  out of the process about as much again. Those are the "least on this machine" for CPU:
  a Python process that verifies what it writes cannot reach 0.4x of skopeo's CPU here,
  whatever its own code does.
"""


def render(
    b: Bench,
    args: argparse.Namespace,
    started: Startup,
    growth: list[bench_growth.GrowthRow],
    profiles: dict[str, dict[str, object]],
    memory: list[tuple[int, Run]],
) -> str:
    """The Markdown report."""
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`python -m tests.bench --write`): mirror (installed with",
        "`pip install .`) and skopeo on the same data in the same run, against Debian's",
        "docker-registry, each tool a separate process, the tools taking turns; medians of",
        f"{args.repeat} runs on loopback and {args.distance_repeat} at a distance, largest peak "
        "RSS seen. CPU is the tool's own user + system seconds.",
        "The data is what registries hold: gzip layers pushed by skopeo as Docker v2 images,",
        "and an image built by umoci from real files (the project's virtual environment:",
        "Python sources, compiled extensions, small files). Every run's manifest digest is",
        "checked against the source's, so neither tool did work the other skipped.",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    for key, heading in SECTIONS.items():
        rows = [r for r in b.rows if r.section == key]
        lines += [f"## {heading}", ""]
        if key == "real":
            lines += [
                "The floor is the upload of the image's largest layer alone into an empty",
                "registry (one POST, one streamed PUT, `tests/bench_floor.py upload`; the",
                "upload's own seconds, without a process start), timed in every round before",
                "the tools' runs: a registry takes a blob's bytes in order, so a push cannot",
                "be much faster than that.",
                "",
            ]
        if key == "distance":
            lines += [
                "A delay proxy (`tests/bench_delay.py`) holds every request "
                f"{b.delay * 1000:.0f} ms before forwarding it, in front of each registry: a "
                "registry in another region.",
                "",
            ]
        lines += [*_table(rows, floors=key == "real"), ""]
        if key == "real":
            lines += _all_layers_at_floor_rate(rows, started, b.largest_layer)
    lines += ["![wall time, mirror vs skopeo](benchmarks.svg)", ""]
    lines += _targets(b.rows, started, growth, profiles)
    lines += bench_growth.render(growth)
    lines += _cpu_section(b, args, profiles)
    lines += [
        "## Memory stays flat as blobs grow",
        "",
        "mirror pulling an image of one gzip blob, registry to layout (blobs of 256 MiB and",
        "more go as parallel ranges):",
        "",
        "| blob | seconds | peak RSS MB |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {mib} MiB | {run.seconds:.2f} | {run.peak_rss_mb:.0f} |" for mib, run in memory]
    lines.append("")
    return "\n".join(lines)


def _all_layers_at_floor_rate(
    rows: Sequence[Row], started: Startup, largest_layer: int
) -> list[str]:
    """The floor scaled to every byte of the image, beside the pushes less start-up."""
    pushes = [r for r in rows if r.floor]
    if not pushes or not largest_layer:
        return []
    image, floor = pushes[0].verified_bytes, statistics.median(r.floor or 0.0 for r in pushes)
    scaled = floor * image / largest_layer
    done = ", ".join(
        f"{r.title.split(' ')[0]} {r.mirror.seconds - started.mirror.seconds:.2f} s" for r in pushes
    )
    return [
        f"At the floor's rate ({largest_layer / 1e6:.0f} MB in {floor:.2f} s), all "
        f"{image / 1e6:.0f} MB of the image take {scaled:.2f} s; mirror less its start-up: "
        f"{done}.",
        "",
    ]


def least_seconds(row: Row, started: Startup, cores: int, cpu_per_byte: float = 0.0) -> float:
    """The least wall time any mirror run of `row` could take on this machine: nothing is
    asked of a server before mirror has started (`started`), and then the servers need the
    CPU they were measured to spend and the run needs `cpu_per_byte` for every byte it
    verifies (hashing it, the kernel's copies), all on this machine's cores."""
    work = row.mirror.servers_cpu + row.verified_bytes * cpu_per_byte
    return started.mirror.seconds + work / cores


#: what any process that verifies what it moves spends: the hashing, the kernel's copies in
#: and out, and the write-back (kinds of tests/bench_cpu.py's profiles)
UNAVOIDABLE_CPU = (
    "hashing (sha256)",
    "socket reads",
    "socket writes",
    "file reads",
    "file writes and fsync",
)


def unavoidable_cpu(profile: dict[str, object]) -> float:
    """The profile's CPU seconds of the unavoidable kinds (C calls: cProfile counts them
    exactly)."""
    kinds: dict[str, float] = profile["kinds"]  # type: ignore[assignment]
    return sum(kinds.get(k, 0.0) for k in UNAVOIDABLE_CPU)


def unavoidable_per_byte(profile: dict[str, object]) -> float:
    """The unavoidable CPU seconds per byte the profiled copy moved."""
    size = profile.get("bytes")
    return unavoidable_cpu(profile) / size if isinstance(size, int) and size else 0.0


def least_cpu(profile: dict[str, object], started: Startup) -> float:
    """The least CPU a verifying pull of the profiled image can cost mirror: its start-up
    and the profile's unavoidable kinds."""
    return started.mirror.cpu + unavoidable_cpu(profile)


def _targets(
    rows: Sequence[Row],
    started: Startup,
    growth: list[bench_growth.GrowthRow],
    profiles: dict[str, dict[str, object]],
) -> list[str]:
    """Issue 17's targets against what this run measured, and the least this machine allows."""
    cores = os.cpu_count() or 1
    profile = profiles["pulling"]

    def least_of(row: Row) -> float:
        kind = "pulling" if row.title.startswith("pull") else "pushing"
        return least_seconds(row, started, cores, unavoidable_per_byte(profiles[kind]))

    def row_of(title: str, section: str | None = None) -> Row:
        return next(r for r in rows if r.title.startswith(title) and section in (None, r.section))

    def against_skopeo(title: str, section: str | None = None) -> tuple[float, float]:
        row = row_of(title, section)
        return row.mirror.seconds / row.skopeo.seconds, least_of(row) / row.skopeo.seconds

    def against_floor(title: str) -> tuple[float, float]:
        row = row_of(title)
        floor = row.floor or float("nan")
        return row.mirror.seconds / floor, least_of(row) / floor

    cpu_row = row_of("pull ")
    middle, largest = growth[-2], growth[-1]
    checks: list[tuple[str, tuple[float, float | None], float]] = [
        ("at a distance: no-op sync", against_skopeo("sync 40 tags, no-op", "distance"), 0.10),
        ("at a distance: first sync", against_skopeo("sync 40 tags, first", "distance"), 0.12),
        ("at a distance: 300 small layers", against_skopeo("pull 300", "distance"), 0.30),
        ("loopback: pull 1 GiB, wall", against_skopeo("pull ", "loopback"), 0.50),
        (
            "loopback: pull 1 GiB, CPU",
            (
                cpu_row.mirror.cpu / cpu_row.skopeo.cpu,
                least_cpu(profile, started) / cpu_row.skopeo.cpu,
            ),
            0.40,
        ),
        ("loopback: 300 layers of 32 KiB", against_skopeo("pull 300", "loopback"), 0.50),
        ("loopback: push 1 GiB", against_skopeo("push "), 0.60),
        ("real files: pull", against_skopeo("pull the real-file"), 0.50),
        ("real files: push, against skopeo", against_skopeo("push it"), 0.90),
        ("real files: push, against its floor", against_floor("push it"), 1.10),
        ("real files: copy, against skopeo", against_skopeo("copy it"), 0.90),
        ("real files: copy, against its floor", against_floor("copy it"), 1.10),
        (
            "growth: per tag, largest / middle",
            (largest.per_tag_ms / middle.per_tag_ms, None),
            1.20,
        ),
    ]
    lines = [
        "## Against the targets",
        "",
        "The least this machine allows is mirror's start-up (below) plus the servers' CPU",
        "seconds in mirror's runs and the CPU any verifying client spends on each byte it",
        "stores or sends (the profiles' hashing, socket and file reads and writes, per byte),",
        f"spread over its {cores} cores,",
        "as a ratio like the target's: no run of mirror can be faster, whatever its own code",
        "costs. For CPU it is the start-up's CPU plus what the pull's profile below counts",
        "for hashing, socket and file reads and writes. Where it is above the bound, the",
        "target cannot be met on this machine.",
        "",
        "| target | measured | bound | least on this machine | met |",
        "|---|---:|---:|---:|---|",
    ]
    for name, (value, least), bound in checks:
        if value <= bound:
            met = "yes"
        elif least is not None and least > bound:
            met = "no: the machine's least is above the bound"
        else:
            met = "no"
        shown = f"{least:.2f}x" if least is not None else "-"
        lines.append(f"| {name} | {value:.2f}x | {bound:.2f}x | {shown} | {met} |")
    rss_ok = "yes" if largest.peak_rss_mb < 150 else "no"
    lines += [
        f"| growth: peak RSS at {largest.tags} tags | {largest.peak_rss_mb:.0f} MB "
        f"| 150 MB | - | {rss_ok} |",
        "",
        "Start-up, `inspect --raw` of one manifest on loopback (process start, imports, one "
        "request, exit), medians:",
        "",
        "| tool | seconds | CPU s |",
        "|---|---:|---:|",
        f"| mirror | {started.mirror.seconds:.2f} | {started.mirror.cpu:.2f} |",
        f"| skopeo | {started.skopeo.seconds:.2f} | {started.skopeo.cpu:.2f} |",
        "",
        "The cases less each tool's start-up (what is left is the transfer itself):",
        "",
        "| case | mirror s | skopeo s | mirror / skopeo |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        m = row.mirror.seconds - started.mirror.seconds
        s = row.skopeo.seconds - started.skopeo.seconds
        lines.append(f"| [{row.section}] {row.title} | {m:.2f} | {s:.2f} | {m / s:.2f}x |")
    lines.append("")
    return lines


def _cpu_section(
    b: Bench, args: argparse.Namespace, profiles: dict[str, dict[str, object]]
) -> list[str]:
    gib = args.size_mib / 1024
    lines = [
        "## CPU per byte",
        "",
        "| case | mirror CPU s per GiB | skopeo CPU s per GiB | mirror / skopeo |",
        "|---|---:|---:|---:|",
    ]
    for row in b.rows[:2]:
        m, s = row.mirror.cpu / gib, row.skopeo.cpu / gib
        lines.append(f"| {row.title} | {m:.2f} | {s:.2f} | {m / s:.2f}x |")
    for (doing, profile), row in zip(profiles.items(), b.rows[:2], strict=True):
        lines += _profile_table(doing, profile, row, args.size_mib)
    lines += ["", TRIED]
    return lines


def _profile_table(doing: str, profile: dict[str, object], row: Row, size_mib: int) -> list[str]:
    """Where mirror's CPU went in one profiled copy, by kind."""
    kinds: dict[str, float] = dict(profile["kinds"])  # type: ignore[call-overload]
    idle = {k: kinds.pop(k) for k in list(kinds) if "waiting" in k}
    total = sum(kinds.values()) or 1.0
    profiled_cpu = float(profile["cpu"])  # type: ignore[arg-type]
    lines = [
        "",
        f"Where mirror's CPU goes {doing} {size_mib} MiB (one run under cProfile, "
        "each thread timed by its own CPU clock: the event loop's and the worker threads "
        f"that hash, read and write, `tests/bench_cpu.py`: {profile['wall']:.2f} s of wall "
        f"time, {profiled_cpu:.2f} s of CPU; the same copy unprofiled took "
        f"{row.mirror.cpu:.2f}, so the profiler's own cost, about "
        f"{max(0.0, profiled_cpu - row.mirror.cpu):.2f} s, sits in the Python row):",
        "",
        "| what | seconds | share |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {kind} | {seconds:.2f} | {100 * seconds / total:.0f} % |"
        for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1])
    ]
    lines += [
        "",
        "Besides, not busy: " + ", ".join(f"{k} {v:.2f} s" for k, v in idle.items()) + ".",
    ]
    return lines


def chart(rows: Sequence[Row]) -> str:
    """A small SVG bar chart of the wall times (loopback and at a distance)."""
    width, row_height, bar = 760, 70, 22
    longest = max(max(r.mirror.seconds, r.skopeo.seconds) for r in rows) or 1.0
    scale = (width - 360) / longest
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{row_height * len(rows) + 40}" font-family="sans-serif" font-size="12">',
        '<text x="10" y="18" font-weight="bold">wall time (s), lower is better</text>',
    ]
    for i, r in enumerate(rows):
        y = 34 + i * row_height
        title = f"[{r.section}] {r.title}"
        parts.append(f'<text x="10" y="{y + 14}">{json.dumps(title)[1:-1][:40]}</text>')
        for j, (name, run, colour) in enumerate(
            (("mirror", r.mirror, "#2a7ab9"), ("skopeo", r.skopeo, "#b9652a"))
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
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    main()
