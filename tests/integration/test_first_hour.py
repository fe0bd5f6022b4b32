"""A new user's first hour (issue 13): options where skopeo users put them, mistakes that get
one clear line, failures that leave nothing behind, waits that end, and a terminal that shows
what is going on."""

from __future__ import annotations

import asyncio
import os
import pty
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fixtures.generate import make_big_image
from tests.support.bounded import abounded_mirror, assert_refused, bounded_mirror
from tests.support.hostile import HostileRegistry, image
from tests.support.registry import Registry
from tests.support.scripted import serving
from tests.support.tools import FIXTURES, REPO, mirror

SINGLE = f"oci:{FIXTURES / 'oci-single'}:v1"  # one linux/amd64 image


# 1. the checkout carries everything its tests read


def test_nothing_in_tests_makefile_or_ci_reads_outside_the_checkout() -> None:
    places = [*REPO.joinpath("tests").rglob("*.py"), REPO / "Makefile", REPO / ".ci" / "run"]
    for path in places:
        text = path.read_text()
        outside = "shared"  # the folder beside our checkout, spelled apart on purpose
        for needle in (f"../{outside}", f'parent / "{outside}"', "REPO.parent"):
            if needle in text and path.name != Path(__file__).name:
                pytest.fail(f"{path.relative_to(REPO)} reads outside the checkout ({needle})")


# 2. global options before or after the command mean the same


def test_global_options_after_the_command(registry: Registry, tmp_path: Path) -> None:
    target = f"docker://{registry.host}/first/after:v1"
    after = mirror("copy", "--plain-http", "--concurrency", "4", "-q", SINGLE, target)
    assert after.returncode == 0, after.stderr
    assert after.stdout == ""  # -q silences the report of what was done...
    tags = mirror("tags", f"{registry.host}/first/after", "-q")
    assert tags.stdout.split() == ["v1"]  # ...never the data asked for
    before = mirror("--json", "tags", f"{registry.host}/first/after")
    assert mirror("tags", f"{registry.host}/first/after", "--json").stdout == before.stdout
    listing = mirror("layout", "ls", str(FIXTURES / "oci-single"), "-q")
    assert "v1" in listing.stdout
    inspect = mirror("inspect", target, "-q")
    assert "sha256:" in inspect.stdout


# 3. --platform is checked


def test_a_platform_the_image_is_not_is_an_error_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "arm"
    result = bounded_mirror("copy", "--platform", "linux/arm64", SINGLE, f"oci:{out}:v1")
    assert_refused(result, "linux/amd64", "linux/arm64")
    assert not out.exists()


def test_a_malformed_platform_is_one_usage_line(tmp_path: Path) -> None:
    result = bounded_mirror("copy", "--platform", "linux", SINGLE, f"oci:{tmp_path / 'x'}:v1")
    assert result.returncode == 2
    assert len(result.lines) == 1
    assert "os/arch" in result.lines[0]
    assert "Traceback" not in result.stderr


def test_bundle_create_with_a_platform_the_image_is_not(registry: Registry, tmp_path: Path) -> None:
    image_ref = registry.push_fixture("oci-single", "first/bundle")
    out = tmp_path / "b.tar"
    result = bounded_mirror("bundle", "create", "--platform", "linux/arm64", str(out), image_ref)
    assert_refused(result, "linux/amd64")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# 4. a failed copy leaves the destination as it was; paths are understood


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_copy_that_fails_before_writing_leaves_no_directory(
    registry: Registry, tmp_path: Path
) -> None:
    cases = {
        "missing-tag": [f"docker://{registry.host}/first/none:v9"],
        "unreachable": [f"docker://127.0.0.1:{_closed_port()}/app:v1"],
        "platform": ["--platform", "linux/s390x", SINGLE],
    }
    for name, source in cases.items():
        out = tmp_path / name
        result = bounded_mirror("--retries", "0", "copy", *source, f"oci:{out}:v1")
        assert_refused(result)
        assert not out.exists(), name


@pytest.fixture(scope="module")
def damaged_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout whose 2 MiB layer (a resumable blob) has one byte changed."""
    root = tmp_path_factory.mktemp("damaged") / "src"
    make_big_image(root, "v1", layers=1, layer_size=2 * 1024 * 1024)
    layer = max((root / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    with layer.open("r+b") as f:
        f.seek(1000)
        f.write(b"X")
    return root


def test_a_copy_from_a_damaged_layout_leaves_no_new_layout(
    damaged_layout: Path, tmp_path: Path
) -> None:
    """Nothing a copy stored before it failed is worth keeping for a next run (small blobs
    only, an emptied partial): a new layout is gone, a folder that was there stays empty."""
    for out in (tmp_path / "new", tmp_path / "deep" / "er" / "new"):
        result = bounded_mirror("copy", f"oci:{damaged_layout}:v1", f"oci:{out}:v1")
        assert_refused(result, "damaged")
        assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    there = tmp_path / "there"
    there.mkdir()
    result = bounded_mirror("copy", f"oci:{damaged_layout}:v1", f"oci:{there}:v1")
    assert_refused(result, "damaged")
    assert list(there.iterdir()) == []


def test_pull_into_oci_dir_and_a_bare_path_hint(registry: Registry, tmp_path: Path) -> None:
    image_ref = registry.push_fixture("oci-single", "first/pull")
    pulled = subprocess.run(
        [sys.executable, "-m", "mirror", "pull", image_ref, "oci:./m9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m9"]
    assert mirror("layout", "verify", str(tmp_path / "m9")).returncode == 0
    assert "v1" in mirror("layout", "ls", str(tmp_path / "m9")).stdout
    hint = mirror("copy", f"docker://{image_ref}", "./dir")
    assert hint.returncode == 2
    assert "did you mean oci:./dir?" in hint.stderr


# 5. waits end, and a terminal always shows what is going on


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A listener that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_host_that_never_answers_ends_at_the_timeout(silent_host: str, tmp_path: Path) -> None:
    result = bounded_mirror(
        "--timeout", "2", "--retries", "0", "copy",
        f"docker://{silent_host}/app:v1", f"oci:{tmp_path / 'out'}:v1",
        timeout=30,
    )  # fmt: skip
    assert_refused(result)
    assert not (tmp_path / "out").exists()


def _on_a_terminal(*args: str, timeout: float = 60) -> str:
    """Run `mirror ARGS` with stderr on a pseudo-terminal; what the terminal showed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        shown.extend(data)
    proc.wait(timeout)
    os.close(leader)
    assert proc.returncode == 0, shown.decode(errors="replace")
    return shown.decode(errors="replace")


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[HostileRegistry, str]]:
    """A registry whose first blob downloads fail with 503."""
    registry = HostileRegistry(unavailable_first=2)
    image(registry, "v1", layer=b"x" * 300_000)
    async with serving(registry.app()) as host:
        yield registry, host


async def test_a_terminal_shows_retries_and_an_overall_line(
    flaky: tuple[HostileRegistry, str], tmp_path: Path
) -> None:
    _, host = flaky
    shown = await asyncio.to_thread(
        _on_a_terminal, "copy", f"docker://{host}/app:v1", f"oci:{tmp_path / 'out'}:v1"
    )
    assert "retrying in" in shown
    assert "blobs 2/2" in shown or "blobs 1/2" in shown


async def test_bundle_commands_show_progress_on_a_terminal(
    flaky: tuple[HostileRegistry, str], registry: Registry, tmp_path: Path
) -> None:
    _, host = flaky
    bundle = tmp_path / "b.tar"
    created = await asyncio.to_thread(
        _on_a_terminal, "bundle", "create", str(bundle), f"{host}/app:v1"
    )
    assert "blobs" in created
    assert f"writing {bundle}" in created
    verified = await asyncio.to_thread(_on_a_terminal, "bundle", "verify", str(bundle))
    assert f"unpacking {bundle}" in verified
    pushed = await asyncio.to_thread(
        _on_a_terminal, "bundle", "push", str(bundle), f"{registry.host}/first"
    )
    assert "pushed" in pushed
    assert "blobs" in pushed


# 7. CLI manners


def test_bare_commands_print_their_help() -> None:
    for args in ((), ("layout",), ("bundle",)):
        result = mirror(*args)
        assert result.returncode == 0
        assert result.stdout.startswith("Usage: mirror")
        assert "error" not in result.stderr


def test_help_names_every_endpoint_form() -> None:
    text = mirror("copy", "--help").stdout
    for form in ("docker://", "oci:", "oci-archive:", "@DIGEST"):
        assert form in text


async def test_props_print_no_python_none(registry: Registry) -> None:
    image_ref = registry.push_fixture("oci-single", "first/props")
    result = await abounded_mirror("props", image_ref)
    assert result.returncode == 0, result.stderr
    assert "None" not in result.stdout
    assert "True" not in result.stdout
    assert "False" not in result.stdout
