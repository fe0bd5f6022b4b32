"""Small registry helpers: Retry-After, Link paging, loopback detection, options."""

from __future__ import annotations

import email.utils
import time

import pytest

from mirror.registry.errors import parse_retry_after
from mirror.registry.options import RegistryOptions, is_loopback
from mirror.registry.transport import next_link


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
    opts = RegistryOptions(insecure=frozenset({"a.example.com"}), plain_http=frozenset({"b:5000"}))
    assert opts.ssl_for("a.example.com") is False
    assert opts.ssl_for("c.example.com") is True
    assert opts.uses_plain_http("b:5000")
    assert not opts.uses_plain_http("c.example.com")
