"""JSON from elsewhere: parsed with nesting too deep for the parser reported as bad JSON."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(raw: bytes | str) -> Any:
    """`json.loads`, raising `json.JSONDecodeError` (a ValueError) for any flaw, including
    nesting so deep that the parser would recurse out of the interpreter's stack."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None
