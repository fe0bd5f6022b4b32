"""Small registry helpers: Retry-After, Link paging, loopback detection, options, pacing."""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path

import pytest

from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient
from mirror.registry.errors import parse_retry_after
from mirror.registry.options import HostSettings, RegistryOptions, is_loopback
from mirror.registry.pacing import Pacer
from mirror.registry.paging import next_link
from mirror.sync.config import load_config
from mirror.sync.run import options_for


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_next_link() -> None:
    assert next_link('</v2/_catalog?last=b&n=2>; rel="next"') == "/v2/_catalog?last=b&n=2"
    assert next_link("<https://x/v2/a/tags/list?n=1&last=v>; rel=next") == (
        "https://x/v2/a/tags/list?n=1&last=v"
    )
    assert next_link('</x>; rel="prev"') is None
    assert next_link(None) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.3.2.1:80", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_tls_is_verified_unless_a_registry_is_named_insecure() -> None:
    opts = RegistryOptions(
        hosts={
            "a.example.com": HostSettings(tls_verify=False),
            "b:5000": HostSettings(plain_http=True),
        }
    )
    assert opts.ssl_for("a.example.com") is False
    assert opts.ssl_for("c.example.com") is True
    assert opts.uses_plain_http("b:5000")
    assert not opts.uses_plain_http("c.example.com")


async def test_the_pacer_spaces_requests_evenly_and_never_delays_a_late_one() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    await asyncio.gather(*(pacer.wait() for _ in range(5)))  # five at once
    assert sorted(slept) == [0.25, 0.5, 0.75, 1.0]  # the first goes at once
    now[0] += 10.0  # long after the last turn: no wait
    await pacer.wait()
    assert len(slept) == 4


async def test_requests_per_second_of_a_sync_config_paces_that_registry_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sync.toml"
    path.write_text(
        '[registries."slow.example"]\nrequests_per_second = 5\n'
        '[[jobs]]\nsource = "slow.example/a"\ndestination = "fast.example/b"\n'
    )
    options = options_for(load_config(path))
    assert options.host("slow.example").requests_per_second == 5.0
    assert options.host("fast.example").requests_per_second is None
    async with RegistryClient(options) as client:
        slow = client.repository(RegistryReference("slow.example", "a"))
        fast = client.repository(RegistryReference("fast.example", "b"))
        assert slow.transport.pacer is not None
        assert slow.transport.pacer.interval == 0.2
        assert fast.transport.pacer is None


async def test_the_http_client_never_repeats_a_request_by_itself() -> None:
    """aiohttp would send an idempotent request again after a cut connection, inside one of
    our tries (a DELETE that acted would then find nothing): the switch that turns it off is
    still there and is off in mirror's session."""
    import aiohttp

    from mirror.registry import RegistryClient, RegistryOptions

    async with aiohttp.ClientSession() as plain:
        assert plain._retry_connection is True  # the switch aiohttp has
    async with RegistryClient(RegistryOptions()) as client:
        assert client.session._retry_connection is False
