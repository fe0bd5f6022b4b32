"""Times as registries and image configs write them (RFC 3339)."""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["parse_time"]


def parse_time(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time (ACR and image configs write them) as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Python before 3.11 rejects 7+ fractional digits; ACR writes them
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
