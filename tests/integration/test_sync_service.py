"""`mirror sync CONFIG --every …` as a service against the real registry (issue 15 part 3):
runs on an interval, picks up new tags and configuration edits, serves Prometheus metrics
that match what it copied, and stops on SIGTERM with the destination consistent."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import mirror
from tests.integration.conftest import full_disk_config
from tests.support.registry import Registry, free_port
from tests.support.scripted import FaultProxy, address, serve
from tests.support.tools import FIXTURES, REPO


class Service:
    """A `mirror sync --every 1s --json` process, its JSON lines read as they come."""

    def __init__(self, process: asyncio.subprocess.Process, metrics: str) -> None:
        self.process = process
        self.metrics_url = f"http://{metrics}"
        self.errors: list[str] = []

    async def next_run(self) -> dict[str, Any]:
        """The next run's report line (within a minute)."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        assert line, await self.stderr()
        report: dict[str, Any] = json.loads(line)
        return report

    async def stderr(self) -> str:
        """What the process said on stderr so far (after it ended)."""
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()

    async def get(self, path: str) -> tuple[int, str]:
        """GET a path of the metrics server: status and text."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.metrics_url}{path}") as reply,
        ):
            return reply.status, await reply.text()

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, parsed by prometheus_client: (name, labels) -> value."""
        status, text = await self.get("/metrics")
        assert status == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def terminate(self) -> int:
        """SIGTERM; the exit code (within a minute)."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 60)


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    """Start services (`start(config_path)`); any left running is killed at the end."""
    started: list[Service] = []

    async def launch(config: Path, *extra: str) -> Service:
        metrics = f"127.0.0.1:{free_port()}"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirror", "--plain-http", "sync", str(config),
            "--every", "1s", "--metrics-addr", metrics, "--json", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        )  # fmt: skip
        started.append(Service(process, metrics))
        return started[-1]

    yield launch
    for service in started:
        if service.process.returncode is None:
            service.process.kill()
            await service.process.wait()


def _job(source: str, destination: str, name: str = "app", extra: str = "") -> str:
    return f'[[jobs]]\nname = "{name}"\nsource = "{source}"\ndestination = "{destination}"\n{extra}'


async def _tags(host: str, repository: str) -> list[str]:
    return sorted(await mirror.list_tags(f"docker://{host}/{repository}"))


async def _push(registry: Registry, fixture: str, target: str) -> None:
    await mirror.copy(f"oci:{FIXTURES / fixture}:v1", f"docker://{registry.host}/{target}")


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_the_service_copies_new_tags_reloads_its_config_and_counts_it_all(
    registry: Registry, start: Any, tmp_path: Path
) -> None:
    host = registry.host
    for tag, fixture in (("a", "oci-single"), ("b", "docker-v2")):
        await _push(registry, fixture, f"svc/src:{tag}")
    config = tmp_path / "sync.toml"
    config.write_text(_job(f"{host}/svc/src", f"{host}/svc/dst"))
    service = await start(config)

    first = await service.next_run()
    assert first["summary"] == {"copied": 2}
    second = await service.next_run()
    assert second["summary"] == {"up-to-date": 2}  # a second run copies nothing

    await _push(registry, "multi-arch", "svc/src:c")  # a tag added between runs
    runs = [await service.next_run()]
    while "copied" not in runs[-1]["summary"]:
        assert len(runs) < 3, runs
        runs.append(await service.next_run())
    assert runs[-1]["summary"] == {"copied": 1, "up-to-date": 2}
    assert await _tags(host, "svc/dst/svc/src") == ["a", "b", "c"]

    # counters match what the runs reported copying
    reports = [first, second, *runs]
    samples = await service.metrics()
    copied = [i for r in reports for i in r["images"] if i["status"] == "copied"]
    assert _value(samples, "mirror_sync_images_total", job="app", status="copied") == 3
    assert _value(samples, "mirror_sync_copied_bytes_total", job="app") == sum(
        i["bytes"] for i in copied
    )
    assert _value(samples, "mirror_sync_runs_total", result="ok") >= len(reports)
    assert _value(samples, "mirror_sync_last_success_timestamp_seconds", job="app") > 0
    assert _value(samples, "mirror_registry_requests_total", registry=host, code="200") > 0
    assert _value(samples, "mirror_sync_run_duration_seconds_count") >= len(reports)
    assert (await service.get("/healthz"))[0] == 200

    # a broken edit is reported and the last good configuration kept; a good one is taken
    config.write_text("[[jobs]\nthis is not TOML")
    kept = await service.next_run()
    kept = await service.next_run() if "copied" in kept["summary"] else kept
    assert kept["summary"] == {"up-to-date": 3}
    config.write_text(
        _job(f"{host}/svc/src", f"{host}/svc/dst")
        + "\n"
        + _job(f"{host}/svc/src", f"{host}/svc/second", name="second")
    )
    taken = await service.next_run()
    taken = taken if "copied" in taken["summary"] else await service.next_run()
    assert taken["summary"] == {"copied": 3, "up-to-date": 3}
    assert _value(await service.metrics(), "mirror_sync_config_errors_total") == 1

    assert await service.terminate() == 0
    said = await service.stderr()
    assert "keeping the last good configuration" in said
    assert "Traceback" not in said


async def test_sigterm_during_a_copy_finishes_the_images_in_flight_and_exits_0(
    registry: Registry, start: Any, tmp_path: Path
) -> None:
    host = registry.host
    fixtures = ("oci-single", "docker-v2", "multi-arch", "artifact")
    for number, fixture in enumerate(fixtures):
        await _push(registry, fixture, f"svc/slow:t{number}")
    slow = FaultProxy(host, rate=0.0, blob_get_delay=0.5)  # a far-away source
    runner = await serve(slow.app())
    try:
        config = tmp_path / "sync.toml"
        config.write_text(
            "[defaults]\nconcurrency = 2\nblob_cache = false\n"
            + _job(f"{address(runner)}/svc/slow", f"{host}/svc/kept")
        )
        service = await start(config)
        async with asyncio.timeout(60):  # until a copy is in flight
            while not slow.blob_asked.is_set():
                assert service.process.returncode is None, await service.stderr()
                await asyncio.sleep(0.05)
        service.process.send_signal(signal.SIGTERM)
        last = await service.next_run()
        assert await asyncio.wait_for(service.process.wait(), 60) == 0
    finally:
        await runner.cleanup()

    statuses = {i["destination"].rsplit(":", 1)[1]: i["status"] for i in last["images"]}
    copied = sorted(t for t, s in statuses.items() if s == "copied")
    assert copied, statuses  # the images in flight finished ...
    assert set(statuses.values()) == {"copied", "stopped"}, statuses  # ... no other started
    assert await _tags(host, "svc/kept/svc/slow") == copied
    for tag in copied:  # each copied image whole: every byte read back and verified
        await mirror.copy(
            f"docker://{host}/svc/kept/svc/slow:{tag}", f"oci:{tmp_path / 'check'}:{tag}"
        )
    assert "finishing the images in flight" in await service.stderr()


async def test_usage_errors_of_the_service_flags(tmp_path: Path) -> None:
    config = tmp_path / "sync.toml"
    config.write_text(_job("127.0.0.1:1/a", "127.0.0.1:1/b"))
    for flags, said in (
        (["--every", "soon"], "not a duration"),
        (["--metrics-addr", "127.0.0.1:9"], "give --every too"),
        (["--every", "1m", "--metrics-addr", "nowhere"], "not HOST:PORT"),
        (["--every", "1m", "--dry-run"], "do not go together"),
    ):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirror", "sync", str(config), *flags,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await process.communicate()
        assert process.returncode == 2, flags
        assert said in err.decode(), err
        assert len(err.decode().strip().splitlines()) == 1, err


async def test_a_job_on_a_full_disk_does_not_stop_the_service(
    registry: Registry, too_big: str, full_disk: Path, start: Any, tmp_path: Path
) -> None:
    config = tmp_path / "sync.toml"
    healthy = tmp_path / "healthy"
    config.write_text(full_disk_config(registry.host, full_disk / "backup", healthy))
    service = await start(config)
    first = await service.next_run()
    statuses = {i["job"]: i["status"] for i in first["images"]}
    assert statuses == {"full": "failed", "healthy": "copied"}, first
    await _push(registry, "docker-v2", "disk/small:v2")  # new work for the next run
    second = await service.next_run()
    copied = [i["destination"] for i in second["images"] if i["status"] == "copied"]
    assert copied == [f"oci:{healthy}:disk/small:v2"], second
    assert await service.terminate() == 0
