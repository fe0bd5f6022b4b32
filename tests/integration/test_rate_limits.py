"""Rate-limit budgets (issue 15, part 2, first steps): mirror reads the budget a registry
announces, reports it, and waits out an exhausted one for the window the registry named.

The real registry sends no rate-limit headers, so a front end in front of it adds them the way
Docker Hub does on manifest GETs (`ratelimit-limit: N;w=…`, `ratelimit-remaining: M;w=…`)
or in the IETF form (`RateLimit: limit=…, remaining=…, reset=…`), and answers 429
`TOOMANYREQUESTS` without `Retry-After` once the budget is spent, as Docker Hub does.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.registry import Registry
from tests.support.scripted import FaultProxy, address, serve
from tests.support.tags import put_tags
from tests.support.tools import amirror


@dataclass
class HubBudget:
    """A manifest-GET budget that shrinks with each GET and, once spent, renews `reset`
    seconds later."""

    limit: int
    ietf: bool = False
    reset: int = 1
    spent: int = 0
    spent_at: float | None = None
    refused: int = 0
    #: manifest GETs answered 503 before any is counted (a front end's hiccup, no budget said)
    unavailable: int = 0

    def _counts(self, request: web.Request) -> bool:
        return request.method == "GET" and "/manifests/" in request.path

    def _renew(self) -> None:
        if self.spent_at is not None and time.monotonic() - self.spent_at >= self.reset:
            self.spent, self.spent_at = 0, None

    def headers(self, left: int) -> dict[str, str]:
        if self.ietf:
            return {"RateLimit": f"limit={self.limit}, remaining={left}, reset={self.reset}"}
        return {
            "ratelimit-limit": f"{self.limit};w={self.reset}",
            "ratelimit-remaining": f"{left};w={self.reset}",
        }

    def answer_instead(self, request: web.Request) -> web.Response | None:
        if not self._counts(request):
            return None
        if self.unavailable > 0:
            self.unavailable -= 1
            body = {"errors": [{"code": "UNAVAILABLE", "message": "try again"}]}
            return web.json_response(body, status=503)
        self._renew()
        if self.spent >= self.limit:
            self.spent_at = self.spent_at or time.monotonic()
            self.refused += 1
            body = {"errors": [{"code": "TOOMANYREQUESTS", "message": "rate limit reached"}]}
            return web.json_response(body, status=429, headers=self.headers(0))
        self.spent += 1
        return None

    def reply_headers(self, request: web.Request) -> dict[str, str]:
        return self.headers(self.limit - self.spent) if self._counts(request) else {}


@pytest.fixture
async def limited(registry: Registry) -> AsyncIterator[tuple[str, HubBudget]]:
    budget = HubBudget(limit=2)
    proxy = FaultProxy(
        registry.host,
        rate=0.0,
        answer_instead=budget.answer_instead,
        reply_headers=budget.reply_headers,
    )
    runner = await serve(proxy.app())
    yield address(runner), budget
    await runner.cleanup()


@pytest.mark.parametrize("ietf", [False, True])
async def test_the_budget_is_reported_and_an_exhausted_one_waited_out(
    registry: Registry, limited: tuple[str, HubBudget], ietf: bool
) -> None:
    host, budget = limited
    budget.ietf = ietf
    registry.push_fixture("multi-arch", "limited/app")  # an index and two manifests: 3 GETs
    started = time.monotonic()
    done = await amirror(
        "--json",
        "--plain-http",
        "copy",
        f"docker://{host}/limited/app:v1",
        f"docker://{host}/limited/copy-{int(ietf)}:v1",
    )
    assert done.returncode == 0, done.stderr
    assert budget.refused >= 1  # the third GET found the budget spent
    assert time.monotonic() - started >= 1.0  # and waited for the announced window
    report = json.loads(done.stdout)
    assert report["rateLimits"][host]["limit"] == 2
    assert 0 <= report["rateLimits"][host]["remaining"] <= 2


async def test_a_sync_report_shows_the_budget_left(
    registry: Registry, limited: tuple[str, HubBudget], tmp_path: pytest.TempPathFactory
) -> None:
    host, budget = limited
    budget.limit = 100
    registry.push_fixture("oci-single", "limited/sync")
    config = tmp_path / "sync.toml"  # type: ignore[operator]
    config.write_text(
        f'[registries."{host}"]\nplain_http = true\n'
        f'[[jobs]]\nsource = "{host}/limited/sync"\ndestination = "oci:{tmp_path}/out"\n'
    )
    done = await amirror("--json", "sync", str(config))
    assert done.returncode == 0, done.stderr
    left = json.loads(done.stdout)["rateLimits"][host]
    assert left["limit"] == 100
    assert left["remaining"] < 100


async def test_a_sync_defers_what_the_reserve_keeps_and_goes_on_elsewhere(
    registry: Registry,
    second_registry: Registry,
    limited: tuple[str, HubBudget],
    tmp_path: pytest.TempPathFactory,
) -> None:
    """`rate_limit_reserve`: once a registry's announced budget is down to the reserve, the
    images still to come from it are deferred (not failed), the other registry's job runs,
    and the exit code (3) says the run was partial."""
    host, budget = limited
    budget.limit, budget.reset = 4, 3600  # no renewal within the test
    for n in range(4):
        registry.push_fixture("oci-single", "limited/many", tag=f"v{n}")
    second_registry.push_fixture("oci-single", "elsewhere/app")
    config = tmp_path / "reserve.toml"  # type: ignore[operator]
    config.write_text(
        "[defaults]\nconcurrency = 1\n"
        f'[registries."{host}"]\nplain_http = true\nrate_limit_reserve = 2\n'
        f'[[jobs]]\nname = "limited"\nsource = "{host}/limited/many"\n'
        f'destination = "oci:{tmp_path}/limited"\n'
        f'[[jobs]]\nname = "other"\nsource = "{second_registry.host}/elsewhere/app"\n'
        f'destination = "oci:{tmp_path}/other"\n'
    )
    done = await amirror("--json", "sync", str(config))
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    by_status: dict[str, list[str]] = {}
    for image in report["images"]:
        by_status.setdefault(image["status"], []).append(image["job"])
    assert by_status.get("failed") is None
    assert by_status["deferred"]
    assert set(by_status["deferred"]) == {"limited"}
    assert "other" in by_status["copied"]
    assert "limited" in by_status["copied"]  # the budget above the reserve was used
    assert budget.refused == 0  # never ran the budget out


async def _rationed_sync(
    registry: Registry, host: str, budget: HubBudget, repository: str, count: int, work: Path
) -> subprocess.CompletedProcess[str]:
    """`count` tags pushed to `repository/r000`, then `mirror --json sync` of every tag
    through the rationed front end `host` into a layout, 16 at a time, keeping a reserve of 1
    (no retries: a GET answered 429 fails its image at once); the run, in which no GET was
    answered 429."""
    await put_tags(registry.host, 1, count, repository)
    config = work / f"{repository}.toml"
    config.write_text(
        "[defaults]\nconcurrency = 16\nretries = 0\n"
        f'[registries."{host}"]\nplain_http = true\nrate_limit_reserve = 1\n'
        f'[[jobs]]\nname = "rationed"\nsource = "{host}/{repository}/r000"\n'
        f'destination = "oci:{work}/out"\n'
    )
    done = await amirror("--json", "sync", str(config))
    assert budget.refused == 0, done.stdout + done.stderr
    return done


def _statuses(stdout: str) -> dict[str, int]:
    counted: dict[str, int] = {}
    for image in json.loads(stdout)["images"]:
        counted[image["status"]] = counted.get(image["status"], 0) + 1
    return counted


async def test_images_in_flight_never_overdraw_a_small_budget(
    registry: Registry, limited: tuple[str, HubBudget], tmp_path: Path
) -> None:
    """Eight images at once against a budget of 4 with a reserve of 1: each manifest GET is
    spent locally before it goes, so none is answered 429."""
    host, budget = limited
    budget.limit, budget.reset = 4, 3600
    done = await _rationed_sync(registry, host, budget, "rationed-small", 8, tmp_path)
    assert done.returncode == 3, done.stderr
    assert _statuses(done.stdout) == {"copied": 3, "deferred": 5}


async def test_a_first_answer_that_says_no_budget_because_it_failed_rations_on(
    registry: Registry, limited: tuple[str, HubBudget], tmp_path: Path
) -> None:
    """The one GET sent to learn the budget is answered 503 without one: that says nothing of
    the budget, so the next GET asks alone in its turn (it was taken as 'no budget' and every
    image then asked at once: answers 429)."""
    host, budget = limited
    budget.limit, budget.reset, budget.unavailable = 4, 3600, 1
    done = await _rationed_sync(registry, host, budget, "rationed-hiccup", 8, tmp_path)
    # the image whose GET met the 503 failed (no retries here); the budget held for the rest
    assert _statuses(done.stdout) == {"failed": 1, "copied": 3, "deferred": 4}


async def test_a_thousand_images_at_concurrency_16_stay_within_a_budget_of_100(
    registry: Registry, limited: tuple[str, HubBudget], tmp_path: Path
) -> None:
    """Issue 29, target 6: 1,000 images, 16 at a time, a budget of 100 and a reserve of 1:
    no GET answered 429, 99 images copied, the rest deferred to a later run."""
    host, budget = limited
    budget.limit, budget.reset = 100, 3600
    done = await _rationed_sync(registry, host, budget, "rationed-many", 1000, tmp_path)
    assert done.returncode == 3, done.stderr
    assert _statuses(done.stdout) == {"copied": 99, "deferred": 901}
    assert budget.spent == 99
