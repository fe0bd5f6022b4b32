"""Names and hosts that say what they are (issue 26, items 6-8): a registry that is down, a
transport forgotten, a path where an endpoint belongs. Each is one line in mirror's words,
at once, and nothing leaves this machine: the commands run with name lookups answered
locally (`tests/support/offline.py`), so a test never depends on the internet."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from tests.support.bounded import assert_refused, bounded_mirror
from tests.support.offline import offline_mirror
from tests.support.tools import FIXTURES


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# a registry that is down


def test_a_registry_that_is_down_is_one_line_in_our_words_at_once() -> None:
    """It was about 7 s of silent retries, then aiohttp's "Cannot connect to host
    127.0.0.1:1 ssl:default" ("ssl" for a plain-HTTP registry)."""
    host = f"127.0.0.1:{_closed_port()}"
    for args in (("tags", f"{host}/app"), ("inspect", f"{host}/app:v1")):
        started = time.monotonic()
        result = bounded_mirror(*args)
        assert_refused(result, f"cannot connect to registry {host}: connection refused")
        assert "ssl" not in result.stderr
        assert time.monotonic() - started < 3, "a refusal on this machine is not retried"


# a name that does not resolve


def test_a_push_to_a_bare_name_fails_at_once_naming_docker_hub(tmp_path: Path) -> None:
    """`push ./src:small app:1` (the registry forgotten) goes to Docker Hub, as Docker would;
    a name that does not resolve is one line at once, not five retries of the lookup."""
    shutil.copytree(FIXTURES / "oci-single", tmp_path / "src")
    result = offline_mirror("push", "./src:v1", "app:1", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert len(result.lines) == 1, result.stderr
    assert "cannot resolve registry registry-1.docker.io" in result.lines[0]
    assert result.lookups == ["registry-1.docker.io"]
    assert result.seconds < 3
