"""JSON from elsewhere: parsed with nesting too deep for the parser reported as bad JSON; a
hook that refuses an object naming one key twice."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DuplicateKey", "loads", "no_duplicate_keys"]


def loads(raw: bytes | str) -> Any:
    """`json.loads`, raising `json.JSONDecodeError` (a ValueError) for any flaw, including
    nesting so deep that the parser would recurse out of the interpreter's stack."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None


class DuplicateKey(ValueError):
    """A JSON object names one key twice; the message names the key."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A `json.loads` object_pairs_hook: the object, or DuplicateKey when a key comes twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out
