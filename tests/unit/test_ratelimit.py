"""Rate-limit budgets in the forms registries send them."""

from __future__ import annotations

from mirror.registry.ratelimit import Budget, parse_budget


def test_docker_hub_headers() -> None:
    found = parse_budget({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"})
    assert found == Budget(remaining=76, limit=100, window=21600)
    assert found.wait() == 21600


def test_early_ietf_headers_with_a_reset() -> None:
    found = parse_budget(
        {
            "RateLimit-Limit": "10",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": "7",
            "RateLimit-Policy": "10;w=60",
        }
    )
    assert found == Budget(remaining=0, limit=10, window=60, reset=7)
    assert found.wait() == 7


def test_structured_ietf_headers() -> None:
    draft7 = parse_budget({"RateLimit": "limit=100, remaining=50, reset=30"})
    assert draft7 == Budget(remaining=50, limit=100, reset=30)
    draft8 = parse_budget(
        {"RateLimit": '"default";r=50;t=30', "RateLimit-Policy": '"default";q=100;w=60'}
    )
    assert draft8 == Budget(remaining=50, limit=100, window=60, reset=30)


def test_nothing_usable_is_nothing() -> None:
    assert parse_budget({}) is None
    assert parse_budget({"ratelimit-remaining": "lots"}) is None
    assert parse_budget({"RateLimit": "limit=ten"}) is None
    assert parse_budget({"ratelimit-remaining": "9" * 40}) is None
