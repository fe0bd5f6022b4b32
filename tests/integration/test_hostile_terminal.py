"""Terminal escapes from a registry (issue 25, item 10): control characters in tags,
repository names and error messages are escaped before text output reaches the terminal
(window titles, screen clears, OSC 8 links, bells); `tags` leaves out tags that break the
tag grammar; JSON stays exact."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.support.bounded import abounded_mirror
from tests.support.hostile import HostileRegistry, image
from tests.support.scripted import serving

TITLE = "\x1b]0;owned\x07"
CLEAR = "\x1b[2J\x1b[H"
LINK = "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"
RAW = ("\x1b", "\x07", "\x9b")


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[HostileRegistry, str]]:
    """A registry whose tags, names and error messages carry terminal escapes."""
    registry = HostileRegistry(
        repositories=["app", f"evil{LINK}"], unknown_message=f"gone{CLEAR}{TITLE}"
    )
    good = image(registry, "v1")
    registry.tags[f"v2{TITLE}"] = good["digest"]
    registry.tags[f"x{CLEAR}\x9b31m"] = good["digest"]
    async with serving(registry.app()) as host:
        yield registry, host


def _clean(text: str) -> None:
    for raw in RAW:
        assert raw not in text, repr(text)


async def test_tags_prints_only_tags_of_the_grammar_and_no_escape(
    hostile: tuple[HostileRegistry, str],
) -> None:
    _, host = hostile
    done = await abounded_mirror("tags", f"{host}/app")
    assert done.returncode == 0, done.stderr
    _clean(done.stdout + done.stderr)
    assert done.stdout.split() == ["v1"]
    assert "2 tags of" in done.stderr
    assert "not of the tag grammar" in done.stderr


async def test_tags_as_json_are_exact(hostile: tuple[HostileRegistry, str]) -> None:
    _, host = hostile
    done = await abounded_mirror("--json", "tags", f"{host}/app")
    assert done.returncode == 0, done.stderr
    _clean(done.stdout)  # the JSON encoder escapes them
    assert sorted(json.loads(done.stdout)) == sorted(["v1", f"v2{TITLE}", f"x{CLEAR}\x9b31m"])


async def test_ls_escapes_a_repository_name(hostile: tuple[HostileRegistry, str]) -> None:
    _, host = hostile
    done = await abounded_mirror("ls", host)
    assert done.returncode == 0, done.stderr
    _clean(done.stdout)
    assert "evil\\x1b]8;;https://evil.example/\\x07click" in done.stdout


async def test_an_error_message_is_escaped(hostile: tuple[HostileRegistry, str]) -> None:
    _, host = hostile
    for verbose in ((), ("-v",)):
        done = await abounded_mirror(*verbose, "inspect", f"{host}/app:missing")
        assert done.returncode == 1, done.stderr
        _clean(done.stderr)
        assert "gone\\x1b[2J" in done.stderr
