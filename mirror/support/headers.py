"""Numbers in headers from elsewhere, parsed with a bound: a header of 5,000 digits is no
number (Python refuses to convert it, and nothing mirror asks needs more than 18 digits)."""

from __future__ import annotations

import re

__all__ = ["header_int"]

#: 18 digits hold any size or offset mirror meets (under 2**60) and fit a 64-bit integer
_DIGITS = re.compile(r"\d{1,18}")


def header_int(value: str | None, *, most: int = 2**60) -> int | None:
    """The whole number `value` holds (surrounding blanks allowed), or None when it holds
    anything else, more than 18 digits, or a number over `most`."""
    text = (value or "").strip()
    if not _DIGITS.fullmatch(text):
        return None
    number = int(text)
    return number if number <= most else None
