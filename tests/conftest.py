"""Shared fixtures: a real registry per session, the committed layouts, tool checks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.registry import Registry, start_registry
from tests.support.tools import FIXTURES, require

#: The container engines' session fixtures `dockerd` and `podman`.
pytest_plugins = ("tests.support.engines",)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A docker-registry on a free loopback port with temporary storage, deletion enabled."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session", autouse=True)
def _own_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """mirror's state (upload sessions, blob locations) in the run's own folder, for this
    process and the mirror processes it starts: nothing of the user's is read or written."""
    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if saved is None:
        del os.environ["XDG_STATE_HOME"]
    else:
        os.environ["XDG_STATE_HOME"] = saved


@pytest.fixture(scope="session", autouse=True)
def _external_tools() -> None:
    """Fail the whole run at once when a required binary is missing."""
    for binary in ("docker-registry", "skopeo", "umoci", "dockerd", "podman"):
        require(binary)


@pytest.fixture
def fixture_copy(tmp_path: Path) -> object:
    """A function copying a committed fixture layout into tmp_path (so tests may change it)."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(FIXTURES / name, dest)
        return dest

    return copy
