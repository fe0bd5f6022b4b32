"""Rate-limit budgets that registries announce in their replies.

Two forms are read:

- Docker Hub's: `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`
  (and `ratelimit-reset` where a registry sends it), also the early IETF drafts' separate
  `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy`;
- the IETF structured forms: `RateLimit: limit=100, remaining=50, reset=30` (draft 7) and
  `RateLimit: "default";r=50;t=30` with `RateLimit-Policy: "default";q=100;w=60` (draft 8+).

Values come from elsewhere: a number that does not parse is left out, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Budget", "parse_budget"]

_INT = re.compile(r"^\s*(\d{1,15})(?!\d)")
_PARAM = re.compile(r"([A-Za-z][\w-]*)\s*=\s*\"?(\d{1,15})(?!\d)\"?")


@dataclass(frozen=True)
class Budget:
    """What a registry says is left of its request budget."""

    remaining: int
    limit: int | None = None
    #: the length of the budget's window, seconds
    window: int | None = None
    #: seconds until the budget is renewed, when said
    reset: int | None = None

    def wait(self) -> float | None:
        """How long to wait for a renewed budget, if the registry said."""
        if self.reset is not None:
            return float(self.reset)
        return float(self.window) if self.window is not None else None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {"remaining": self.remaining}
        for key in ("limit", "window", "reset"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        return out


def _leading_int(value: str | None) -> int | None:
    found = _INT.match(value) if value else None
    return int(found.group(1)) if found else None


def _params(value: str | None) -> dict[str, int]:
    return {k.lower(): int(v) for k, v in _PARAM.findall(value or "")}


def parse_budget(headers: Mapping[str, str]) -> Budget | None:
    """The budget a reply's headers announce, or None when they say nothing usable."""
    lower = {k.lower(): v for k, v in headers.items()}
    policy = _params(lower.get("ratelimit-policy"))
    structured = _params(lower.get("ratelimit"))
    remaining = _leading_int(lower.get("ratelimit-remaining"))
    if remaining is None:
        remaining = structured.get("remaining", structured.get("r"))
    if remaining is None:
        return None
    limit = _leading_int(lower.get("ratelimit-limit"))
    if limit is None:
        limit = structured.get(
            "limit", policy.get("q", _leading_int(lower.get("ratelimit-policy")))
        )
    window = _params(lower.get("ratelimit-limit")).get("w") or policy.get("w")
    if window is None:
        window = _params(lower.get("ratelimit-remaining")).get("w")
    reset = _leading_int(lower.get("ratelimit-reset"))
    if reset is None:
        reset = structured.get("reset", structured.get("t"))
    return Budget(remaining, limit, window, reset)
