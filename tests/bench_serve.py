"""The serving case of `make bench`: 8 parallel pulls of a 512 MiB image (4 uncompressed
layers of 128 MiB) from `mirror serve` of a layout and from Debian's `docker-registry`
holding the same image, same run, alternated. The pulls are 8 curl processes at once, so
both servers face the same client and the client is not what is measured; one untimed pull
through `python -m tests.bench_serve pull --verify` checks every blob first. Reported: wall
time (medians), the servers' CPU, and each server's peak RSS (VmHWM).
Alone: `python -m tests.bench_serve [REPEAT]`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fixtures.generate import make_big_image
from tests.bench_run import Run, median, timed
from tests.support.registry import Registry, start_registry
from tests.support.tools import require

MiB = 1024 * 1024
PULLS = 8
LAYERS = 4
LAYER_SIZE = 128 * MiB
TITLE = f"{PULLS} parallel pulls of a {LAYERS * LAYER_SIZE // MiB} MiB image"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Served:
    """A `mirror serve` process (a watched server for `timed`)."""

    host: str
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class ServeResult:
    """Both servers' medians and peak memory."""

    mirror: Run
    registry: Run
    mirror_rss_mb: float
    registry_rss_mb: float


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_mirror_serve(layout: Path, mirror_cmd: Callable[..., list[str]], env: dict[str, str]
                       ) -> Served:  # fmt: skip
    """`mirror serve oci:LAYOUT` on a free loopback port, once it prints its URL."""
    process = subprocess.Popen(
        mirror_cmd("serve", "--listen", "127.0.0.1:0", "--repository", "served", f"oci:{layout}"),
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("serving on http://"):
        process.kill()
        raise SystemExit(f"mirror serve did not start: {line!r}")
    return Served(line.strip().removeprefix("serving on http://"), process)


async def _pull(host: str, name: str, verify: bool) -> None:
    """One pull: the manifest, then each blob read to its end (hashed with `verify`)."""
    import aiohttp

    async with aiohttp.ClientSession(f"http://{host}") as http:
        answer = await http.get(f"/v2/{name}/manifests/v1", headers={"Accept": ACCEPT})
        manifest = json.loads(await answer.read())
        for blob in [manifest["config"], *manifest["layers"]]:
            hasher = hashlib.sha256()
            async with http.get(f"/v2/{name}/blobs/{blob['digest']}") as reply:
                async for chunk in reply.content.iter_chunked(MiB):
                    if verify:
                        hasher.update(chunk)
            if verify and f"sha256:{hasher.hexdigest()}" != blob["digest"]:
                raise SystemExit(f"{host}: blob {blob['digest']} does not verify")


async def pull_all(host: str, name: str, verify: bool) -> None:
    """`PULLS` pulls at once."""
    await asyncio.gather(*(_pull(host, name, verify) for _ in range(PULLS)))


def pull_cmd(host: str, name: str, *, verify: bool = False) -> list[str]:
    """The checking client: `PULLS` parallel pulls of `name` from `host`, every blob hashed."""
    return [sys.executable, "-m", "tests.bench_serve", "pull", host, name, *(["--verify"] * verify)]


def curl_pulls(host: str, name: str, blobs: Sequence[str]) -> list[str]:
    """The timed client: `PULLS` curl processes at once, each fetching the manifest and then
    every blob (curl is fast enough that the servers, not the client, are measured)."""
    base = f"http://{host}/v2/{name}"
    one = [require("curl"), "-sf", "-H", f"Accept: {ACCEPT}", "-o", "/dev/null",
           f"{base}/manifests/v1"]  # fmt: skip
    for digest in blobs:
        one += ["-o", "/dev/null", f"{base}/blobs/{digest}"]
    line = " ".join(shlex.quote(word) for word in one)
    return ["sh", "-c", " & ".join([line] * PULLS) + " & wait"]


def _blobs(layout: Path) -> list[str]:
    """The digests of the config and layers of a layout's only image."""
    index = json.loads((layout / "index.json").read_bytes())
    top = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / top).read_bytes())
    return [b["digest"] for b in [manifest["config"], *manifest["layers"]]]


def profile(
    work: Path,
    repeat: int,
    registries: list[Registry],
    mirror_cmd: Callable[..., list[str]],
    env: dict[str, str] | None = None,
) -> ServeResult:
    """Make the image, put it in a registry and a layout, time both servers' pulls."""
    layout = work / "served-layout"
    make_big_image(layout, "v1", LAYERS, LAYER_SIZE, seed=512)
    registry = start_registry(work / "served-registry")
    registries.append(registry)
    subprocess.run(
        mirror_cmd("copy", f"oci:{layout}:v1", f"docker://{registry.host}/bench/served:v1"),
        env=env, check=True,
    )  # fmt: skip
    served = start_mirror_serve(layout, mirror_cmd, env or {})
    try:
        mirror_host, name, blobs = served.host, "served", _blobs(layout)
        for host, repo in ((mirror_host, name), (registry.host, "bench/served")):
            subprocess.run(pull_cmd(host, repo, verify=True), check=True)  # untimed check
        runs: dict[str, list[Run]] = {"mirror": [], "registry": []}
        for _ in range(repeat):
            mirror_pulls = curl_pulls(mirror_host, name, blobs)
            registry_pulls = curl_pulls(registry.host, "bench/served", blobs)
            runs["mirror"].append(timed(mirror_pulls, env, [served]))
            runs["registry"].append(timed(registry_pulls, env, [registry]))
        return ServeResult(
            median(runs["mirror"]),
            median(runs["registry"]),
            peak_rss_mb(served.process.pid),
            peak_rss_mb(registry.process.pid),
        )
    finally:
        served.process.terminate()
        served.process.wait(60)


def render(result: ServeResult) -> list[str]:
    """The section of the report."""
    m, r = result.mirror, result.registry
    return [
        "",
        "## Serving",
        "",
        f"{PULLS} clients at once pull the same image ({LAYERS} uncompressed layers of",
        f"{LAYER_SIZE // MiB} MiB) from `mirror serve oci:DIR` and from Debian's `docker-registry`",
        f"holding the same image: {PULLS} curl processes at once, each the manifest and every",
        "blob (after one untimed pull that verifies every blob). Server CPU and peak RSS",
        "(VmHWM) are the servers' own; the times are medians.",
        "",
        "| case | mirror serve s | docker-registry s | mirror / registry | mirror serve CPU s "
        "| registry CPU s | mirror serve peak RSS MB | registry peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| {TITLE} | {m.seconds:.2f} | {r.seconds:.2f} | {m.seconds / r.seconds:.2f}x "
        f"| {m.servers_cpu:.2f} | {r.servers_cpu:.2f} | {result.mirror_rss_mb:.0f} "
        f"| {result.registry_rss_mb:.0f} |",
    ]


def main(argv: Sequence[str]) -> None:
    """`pull HOST NAME [--verify]` (the client), or the case alone with its report."""
    if argv[:1] == ["pull"]:
        asyncio.run(pull_all(argv[1], argv[2], "--verify" in argv))
        return
    import shutil
    import tempfile

    from tests.bench_run import mirror_cmd

    work = Path(tempfile.mkdtemp(prefix="mirror-bench-serve-"))
    registries: list[Registry] = []
    try:
        repeat = int(argv[0]) if argv else 3
        print("\n".join(render(profile(work, repeat, registries, mirror_cmd))))
    finally:
        for reg in registries:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
