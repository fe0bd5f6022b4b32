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
from tests.support.offline import OfflineRun, offline_mirror
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


# a transport or a host forgotten


def test_a_registry_host_alone_is_not_a_docker_hub_repository(tmp_path: Path) -> None:
    """`127.0.0.1:33807` was `docker.io/library/127.0.0.1`, tag 33807: 7 s of retries towards
    registry-1.docker.io. A first component with a port, `localhost` or an address is a
    registry host, as Docker's normalisation says; alone, it lacks the repository."""
    for name in ("127.0.0.1:33807", "localhost:5000", "localhost", "[::1]:5000", "10.1.2.3"):
        result = offline_mirror("tags", name, cwd=tmp_path)
        _usage_line(result, f"{name} is a registry", f"{name}/REPOSITORY")


def test_a_forgotten_colon_after_the_transport_is_hinted(tmp_path: Path) -> None:
    source = f"oci:{FIXTURES / 'oci-single'}:v1"
    for destination, meant in (
        ("oci", "oci:DIR"),
        ("oci./backup", "oci:./backup"),
        ("oci/tmp/backup:v1", "oci:/tmp/backup:v1"),
        ("oci-archive./app.tar", "oci-archive:./app.tar"),
        ("docker-archive/tmp/app.tar", "docker-archive:/tmp/app.tar"),
    ):
        result = offline_mirror("copy", source, destination, cwd=tmp_path)
        _usage_line(result, f"did you mean {meant}?")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_inspect_and_tags_hint_a_path_as_copy_does(tmp_path: Path) -> None:
    """`inspect ./backup` went to Docker Hub; `inspect backup:1.0`, with `backup` a layout
    here, too."""
    shutil.copytree(FIXTURES / "oci-single", tmp_path / "backup")
    for args, meant in (
        (("inspect", "./backup"), "oci:./backup"),
        (("inspect", "backup:1.0"), "oci:backup:1.0"),
        (("tags", "./backup"), "oci:./backup"),
        (("copy", "backup:v1", "oci:./out:v1"), "oci:backup:v1"),
    ):
        result = offline_mirror(*args, cwd=tmp_path)
        _usage_line(result, f"did you mean {meant}?")


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


def _usage_line(result: OfflineRun, *words: str) -> None:
    """A usage error (exit 2) in one line naming `words`, at once, with no lookup made."""
    assert result.returncode == 2, result.stderr
    assert len(result.lines) == 1, result.stderr
    for word in words:
        assert word in result.lines[0], result.stderr
    assert result.lookups == [], "nothing is looked up for a name refused"
    assert result.seconds < 3


def test_a_sync_destination_given_as_a_path_is_refused_naming_the_key(tmp_path: Path) -> None:
    """`destination = "/tmp/b"` passed the check: `--dry-run` planned `docker:///tmp/b/…` and
    exited 0, and the run failed every image."""
    target = tmp_path / "b"
    for key, path, meant in (
        ("destination", str(target), f"oci:{target}"),
        ("destination", "./b", "oci:./b"),
        ("destination", "oci/srv/b", "oci:/srv/b"),
        ("source", "./layout", "oci:./layout"),
    ):
        job = {"source": "registry.example.com/team/app", "destination": f"oci:{target}"}
        job[key] = path
        config = tmp_path / "sync.toml"
        config.write_text("[[jobs]]\n" + "".join(f'{k} = "{v}"\n' for k, v in job.items()))
        for args in (("sync", "--dry-run", str(config)), ("sync", str(config))):
            result = offline_mirror(*args, cwd=tmp_path)
            assert result.returncode == 1, result.stderr
            assert len(result.lines) == 1, result.stderr
            assert f"jobs[0].{key}" in result.lines[0]
            assert f"did you mean {meant}?" in result.lines[0]
            assert result.lookups == []
    assert not target.exists()
