"""Sources and destinations are roles: a write-only archive is a destination only, an archive
read in place a source only, and mypy (not a runtime raise) says so of a read from a writer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mirror.archive.docker_export import DockerArchiveWriter
from mirror.archive.reader import ArchiveReader
from mirror.archive.writer import ArchiveWriter
from mirror.endpoint import Endpoint, ImageDestination, ImageSource
from mirror.layout import Layout
from tests.support.tools import REPO


def test_each_place_plays_its_roles(tmp_path: Path) -> None:
    for writer in (ArchiveWriter(tmp_path / "a.tar"), DockerArchiveWriter(tmp_path / "d.tar")):
        assert isinstance(writer, ImageDestination)
        assert not isinstance(writer, ImageSource)
    reader = ArchiveReader(tmp_path / "a.tar")
    assert isinstance(reader, ImageSource)
    assert not isinstance(reader, ImageDestination)
    assert isinstance(Layout(tmp_path / "l"), Endpoint)


def test_mypy_refuses_a_read_from_an_archive_being_written(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from pathlib import Path\n"
        "from mirror.archive.writer import ArchiveWriter\n"
        "from mirror.engine import copy_image\n\n\n"
        "async def read_back() -> None:\n"
        "    writer = ArchiveWriter(Path('out.tar'))\n"
        "    await writer.manifest_get('v1')\n"
        "    await copy_image(writer, 'v1', writer, 'v2')\n"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(probe)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert checked.returncode == 1, checked.stdout
    assert '"ArchiveWriter" has no attribute "manifest_get"' in checked.stdout
    assert 'Argument 1 to "copy_image" has incompatible type "ArchiveWriter"' in checked.stdout
