"""The examples of README.md and docs/: fenced blocks, read as a person would copy them.

A block may be preceded by an HTML comment: `<!-- run by: PATH ... -->` names the test (or
script) that runs it instead of the docs test; `<!-- file: NAME -->` says the block is the
file NAME that the page's commands read. `tests/integration/test_docs.py` writes the files,
checks that named tests exist, and runs every other block.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "blocks", "commands", "matches"]

_FENCE = re.compile(r"^```(\w*)\s*$")
_NOTE = re.compile(r"<!--\s*(.*?)\s*-->")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, the note just above it."""

    path: Path
    line: int
    lang: str
    text: str
    note: str | None

    @property
    def file(self) -> str | None:
        """The file name a `<!-- file: NAME -->` note gives the block (a configuration the
        page's commands read)."""
        if self.note and self.note.startswith("file:"):
            return self.note.removeprefix("file:").strip()
        return None

    @property
    def run_by(self) -> str | None:
        """The file a `<!-- run by: FILE … -->` note names, if any."""
        if self.note and self.note.startswith("run by:"):
            return self.note.removeprefix("run by:").split()[0]
        return None


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        note = _NOTE.search(above)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        text = "\n".join(lines[i + 1 : end]) + "\n"
        out.append(Block(path, i + 1, fence.group(1), text, note.group(1) if note else None))
        i = end + 1
    return out


def commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    out: list[list[str]] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def matches(expected: str, actual: str) -> bool:
    """True when `actual` is `expected` with each `…` standing for any run of characters."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual) is not None
