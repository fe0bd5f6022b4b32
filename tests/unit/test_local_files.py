"""Local files, lower severity (issue 25, item 11): a credential helper's name is a name,
never a path; an upload-session file opens as a layout file does (no link, capped)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mirror.auth.credentials import DockerConfig
from mirror.errors import MirrorError
from mirror.registry.sessions import UploadSessions
from tests.support.bounded import MEMORY_MIB, _result
from tests.support.tools import REPO


@pytest.mark.parametrize("name", ["x/../evil", "x/../../evil", "/tmp/evil", ".."])
def test_a_helper_name_that_is_a_path_is_never_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = tmp_path / "ran"
    work = tmp_path / "work"
    (work / "docker-credential-x").mkdir(parents=True)
    for evil in (work / "evil", tmp_path / "evil"):  # what `x/../evil` reaches from here
        evil.write_text(f"#!/bin/sh\ntouch {ran}\n")
        evil.chmod(evil.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(work)
    config = DockerConfig({"credsStore": name}, tmp_path / "config.json")
    with pytest.raises(MirrorError, match="is not a helper name"):
        config.lookup("registry.example.com")
    assert not ran.exists()


def test_a_session_file_planted_as_a_link_to_dev_zero_is_dropped(tmp_path: Path) -> None:
    sessions = UploadSessions(tmp_path)
    planted = sessions._path("reg", "app", "sha256:" + "a" * 64)
    os.symlink("/dev/zero", planted)
    code = (
        "import sys; from pathlib import Path; from mirror.registry.sessions import UploadSessions;"
        f"print(UploadSessions(Path({str(tmp_path)!r})).load('reg', 'app', 'sha256:' + 'a' * 64))"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.bounded", sys.executable, "-c", code],
        capture_output=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    done = _result(proc.returncode, proc.stdout, proc.stderr, False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert done.peak_mib < MEMORY_MIB
    assert not os.path.lexists(planted)  # the planted link is dropped, /dev/zero untouched


def test_an_oversized_session_file_is_dropped(tmp_path: Path) -> None:
    sessions = UploadSessions(tmp_path)
    path = sessions._path("reg", "app", "sha256:" + "b" * 64)
    path.write_bytes(b" " * (1024 * 1024))
    assert sessions.load("reg", "app", "sha256:" + "b" * 64) is None
    assert not path.exists()
