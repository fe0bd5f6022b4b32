"""The shared-layer case of `make bench`: eight repositories whose images share three gzip
layers of 20 MB, mirrored into an empty registry by `mirror sync` and by skopeo (one
`skopeo copy` per repository, with its blob-info cache, as users run it). A counting proxy in
front of each target registry measures the bytes uploaded; wall time is the whole job's."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fixtures.generate import LayoutWriter, image
from tests.support.registry import Registry, start_registry
from tests.support.scripted import FaultProxy, address, serve
from tests.support.tools import require

REPOSITORIES = 8
LAYERS = 3
LAYER_SIZE = 20 * 1000 * 1000
TITLE = f"sync {REPOSITORIES} repositories sharing {LAYERS} layers of 20 MB"


@dataclass
class SharedRun:
    """One tool's job: wall time and bytes its target registry received."""

    seconds: float
    uploaded: int


class CountingProxy:
    """A FaultProxy that injects nothing, served by its own event loop in a thread."""

    def __init__(self, upstream: str) -> None:
        self.proxy = FaultProxy(upstream, rate=0.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(serve(self.proxy.app()), self.loop).result()
        self.host = address(self.runner)

    def stop(self) -> None:
        """Stop serving."""
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def seed(work: Path, source: Registry, mirror_cmd: Callable[..., list[str]]) -> None:
    """Push the eight images to `source` (mirror, no blob memory)."""
    writer = LayoutWriter(work / "shared-layout")
    files = [{f"layer{i}.bin": random.Random(100 + i).randbytes(LAYER_SIZE)} for i in range(LAYERS)]
    for n in range(REPOSITORIES):
        writer.name(image(writer, files, created=f"2024-05-{n + 1:02d}T00:00:00Z"), f"app{n}")
    writer.close()
    for n in range(REPOSITORIES):
        subprocess.run(
            mirror_cmd(
                "--no-blob-cache",
                "copy",
                f"oci:{work / 'shared-layout'}:app{n}",
                f"docker://{source.host}/shared/app{n}:v1",
            ),
            check=True,
        )
    shutil.rmtree(work / "shared-layout")


def profile(
    work: Path,
    source: Registry,
    repeat: int,
    registries: list[Registry],
    mirror_cmd: Callable[..., list[str]],
    env: dict[str, str] | None = None,
) -> dict[str, SharedRun]:
    """The best of `repeat` runs of each tool, each into a fresh registry (`env`: the one
    mirror runs in)."""
    seed(work, source, mirror_cmd)
    best: dict[str, SharedRun] = {}
    for _ in range(repeat):
        for tool in ("mirror", "skopeo"):
            target = start_registry(work / f"shared-{tool}-{time.monotonic_ns()}")
            registries.append(target)
            proxy = CountingProxy(target.host)
            try:
                commands = _commands(tool, work, source.host, proxy.host, mirror_cmd)
                started = time.perf_counter()
                for command in commands:
                    subprocess.run(command, check=True, capture_output=True, env=env)
                run = SharedRun(time.perf_counter() - started, proxy.proxy.bytes_in)
            finally:
                proxy.stop()
                target.stop()
            if tool not in best or run.seconds < best[tool].seconds:
                best[tool] = run
    return best


def _commands(
    tool: str, work: Path, source: str, target: str, mirror_cmd: Callable[..., list[str]]
) -> Sequence[list[str]]:
    if tool == "mirror":
        config = work / f"shared-{time.monotonic_ns()}.toml"
        config.write_text(
            f'[registries."{source}"]\nplain_http = true\n'
            f'[registries."{target}"]\nplain_http = true\n'
            f'[[jobs]]\nregistry = "{source}"\ninclude = ["shared/*"]\n'
            f'destination = "{target}/m"\n'
        )
        return [mirror_cmd("sync", str(config))]
    return [
        [
            require("skopeo"),
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{source}/shared/app{n}:v1",
            f"docker://{target}/s/shared/app{n}:v1",
        ]
        for n in range(REPOSITORIES)
    ]


def render(best: dict[str, SharedRun]) -> list[str]:
    """The Markdown section."""
    unique = LAYERS * LAYER_SIZE
    m, s = best["mirror"], best["skopeo"]
    return [
        "",
        "## Shared layers cross the wire once",
        "",
        f"{REPOSITORIES} repositories whose images share {LAYERS} gzip layers of 20 MB",
        f"({unique / 1e6:.0f} MB distinct), into an empty registry: `mirror sync` (a job of the",
        "whole registry) against one `skopeo copy` per repository (skopeo mounts from its",
        "blob-info cache). Bytes uploaded are counted by a proxy in front of the target.",
        "",
        "| case | mirror s | skopeo s | mirror / skopeo | mirror MB up | skopeo MB up |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {TITLE} | {m.seconds:.2f} | {s.seconds:.2f} | {m.seconds / s.seconds:.2f}x "
        f"| {m.uploaded / 1e6:.1f} | {s.uploaded / 1e6:.1f} |",
    ]


def main() -> None:
    """Run the shared-layer case alone (`python -m tests.bench_shared`) and print it."""
    import tempfile

    from tests.bench_run import mirror_cmd

    work = Path(tempfile.mkdtemp(prefix="mirror-bench-shared-"))
    source = start_registry(work / "source")
    registries = [source]
    try:
        print("\n".join(render(profile(work, source, 1, registries, mirror_cmd))))
    finally:
        for reg in registries:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
