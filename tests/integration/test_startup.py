"""Start-up (issue 26): help and usage errors answer without loading the transfer stack
(aiohttp, rich, the registry client), so they come back at once. Measured as a behaviour —
what `python -X importtime` says was imported — not as a time; `make bench` times it."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from mirror.cli.main import _COMMANDS, cli
from mirror.cli.output import Options
from mirror.retry import DEFAULT_RETRIES
from tests.support.registry import Registry
from tests.support.tools import REPO

#: what only a transfer needs: the HTTP stack, the terminal display, the registry client
HEAVY = ("aiohttp", "rich", "mirror.registry", "prometheus_client")

CASES = [
    ["--help"],
    ["copy", "--help"],
    ["copy"],  # a missing argument
    ["copy", "a", "b", "--concurency", "4"],  # a misspelt option
    ["copy", "./here", "oci:x"],  # a path where an endpoint belongs
    ["layout", "--help"],
    ["bundle", "--help"],
    ["bundle", "push", "--help"],
    ["inspect", "--help"],
    ["prune", "--help"],
    ["sync", "--help"],
    ["sync", "x.toml", "--every", "0s"],
    ["nosuchcommand"],
]


def imported_by(*args: str) -> tuple[int, set[str]]:
    """`mirror ARGS`'s exit code and every module its start-up imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mirror", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    modules = {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done.returncode, modules


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_help_and_usage_errors_load_no_transfer_stack(args: list[str]) -> None:
    code, modules = imported_by(*args)
    assert code in (0, 2), args
    assert "click" in modules  # importtime did report
    heavy = sorted(m for m in modules if m.startswith(HEAVY))
    assert heavy == [], heavy[:5]


def test_a_command_that_runs_loads_what_it_needs(tmp_path: object) -> None:
    """The probe sees imports: a real copy loads the registry client."""
    code, modules = imported_by("tags", "127.0.0.1:1/none", "--timeout", "0.5", "--retries", "0")
    assert code == 1
    assert "mirror.registry.client" in modules


#: what reading one manifest from a registry has no use for: other endpoints, the copy
#: engine, the image graph, the display, the sync and management code
NOT_FOR_ONE_REQUEST = (
    "mirror.layout",
    "mirror.archive",
    "mirror.engine",
    "mirror.attached",
    "mirror.graph",
    "mirror.copy_options",
    "mirror.sync",
    "mirror.manage",
    "rich",
    "prometheus_client",
)


def test_a_command_that_makes_one_request_imports_only_what_it_uses(registry: Registry) -> None:
    """Issue 29, target 5: `inspect --raw` of a registry image loads the registry client and
    nothing a copy between other endpoints would need."""
    image = registry.push_fixture("oci-single", "startup/one")
    code, modules = imported_by("-q", "inspect", "--raw", f"docker://{image}")
    assert code == 0
    assert "mirror.registry.client" in modules
    assert sorted(m for m in modules if m.startswith(NOT_FOR_ONE_REQUEST)) == []


def test_mirror_help_lists_the_commands_without_importing_them() -> None:
    code, modules = imported_by("--help")
    assert code == 0
    assert sorted(m for m in modules if m.startswith("mirror.cli.")) == [
        "mirror.cli.main",
        "mirror.cli.output",
    ]


def test_each_commands_summary_in_mirror_help_is_its_own() -> None:
    """The summaries `mirror --help` lists without importing a command are the commands'."""
    for name in cli.list_commands(click.Context(cli)):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        assert _COMMANDS[name].summary == command.get_short_help_str(limit=10_000), name


def test_the_retries_mirror_help_shows_are_the_librarys() -> None:
    """`--retries`'s default comes from the CLI's options (mirror.retry is not imported for
    help): it is the library's."""
    assert Options().retries == DEFAULT_RETRIES
