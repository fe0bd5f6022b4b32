"""Text from elsewhere made safe to print: what a registry, a layout or an archive sent may
hold control characters (ESC, BEL, OSC 8 links, a screen clear, bidirectional overrides)
that would drive the user's terminal. Text output passes through `printable`; JSON output
stays exact (its encoder escapes them)."""

from __future__ import annotations

import re

__all__ = ["printable"]

#: C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character but tab and newline written as an escape
    (`\\x1b`, `\\u202e`), so printing it shows what was sent and drives nothing."""
    return _CONTROL.sub(_escaped, text)
