"""The public surface is small, sorted and complete, and loads lazily; the error tree is as
documented."""

from __future__ import annotations

import subprocess
import sys

import click

import mirror
from mirror import errors
from mirror.cli.main import cli


def test_all_is_sorted_and_importable() -> None:
    assert list(mirror.__all__) == sorted(mirror.__all__)
    for name in mirror.__all__:
        assert hasattr(mirror, name), name


def test_every_public_name_has_one_source_module() -> None:
    assert sorted([*mirror._MODULE_OF, *errors.__all__]) == list(mirror.__all__)
    for name, module in mirror._MODULE_OF.items():
        assert getattr(mirror, name) is getattr(sys.modules[module], name), name


def test_import_mirror_loads_nothing_heavy_and_copy_stays_the_function() -> None:
    probe = (
        "import sys, mirror\n"
        "assert 'aiohttp' not in sys.modules and 'mirror.api' not in sys.modules\n"
        "import mirror.engine\n"
        "assert callable(mirror.copy) and mirror.copy.__module__ == 'mirror.api'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_every_error_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name
        assert issubclass(getattr(errors, name), errors.MirrorError)


def test_error_tree_shape() -> None:
    assert issubclass(errors.ManifestNotFound, LookupError)
    assert issubclass(errors.InvalidReference, ValueError)
    assert issubclass(errors.DigestMismatch, errors.ContentError)
    assert errors.TransportError.retryable
    limited = errors.RateLimited("slow", retry_after=3.0, status=429)
    assert (limited.retryable, limited.retry_after, limited.status) == (True, 3.0, 429)


def test_every_command_is_found_by_its_name_and_loads_alone() -> None:
    for name in cli.list_commands(click.Context(cli)):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        assert command.name == name
    probe = (
        "import sys\n"
        "from mirror.cli.main import cli\n"
        "import click\n"
        "cli.get_command(click.Context(cli), 'copy')\n"
        "loaded = {m for m in sys.modules if m.startswith('mirror.')}\n"
        "others = {'mirror.cli.sync', 'mirror.cli.manage', 'mirror.cli.bundle'}\n"
        "assert not loaded & others, loaded\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
