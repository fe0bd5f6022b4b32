"""A CLI that forgives (issue 26): global options wherever a user puts them, a "did you mean"
for every misspelt option, help that lists what a command accepts, dry runs that -q cannot
silence, and usage errors that come before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fixtures.generate import LayoutWriter, image
from tests.support.registry import Registry
from tests.support.tools import FIXTURES, mirror

LAYOUT = str(FIXTURES / "oci-single")
SINGLE = f"oci:{LAYOUT}:v1"


# global options between a group and its subcommand, as before or after the command


def test_global_options_between_a_group_and_its_subcommand() -> None:
    before = mirror("--json", "layout", "ls", LAYOUT)
    assert before.returncode == 0, before.stderr
    between = mirror("layout", "--json", "ls", LAYOUT)
    assert between.returncode == 0, between.stderr
    assert json.loads(between.stdout) == json.loads(before.stdout)
    valued = mirror("layout", "--retries", "2", "-q", "verify", LAYOUT)
    assert (valued.returncode, valued.stdout, valued.stderr) == (0, "", "")


def test_a_misspelt_global_option_after_the_command_gets_a_did_you_mean(tmp_path: Path) -> None:
    result = mirror("copy", SINGLE, f"oci:{tmp_path / 'x'}", "--concurency", "4")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "did you mean '--concurrency'" in result.stderr.lower(), result.stderr
    own = mirror("copy", SINGLE, f"oci:{tmp_path / 'x'}", "--referers")
    assert "did you mean '--referrers'" in own.stderr.lower(), own.stderr
    assert not (tmp_path / "x").exists()


def test_a_commands_help_lists_the_global_options_it_accepts() -> None:
    for words in (["copy"], ["layout", "ls"], ["layout"], ["sync"]):
        result = mirror(*words, "--help")
        assert result.returncode == 0, result.stderr
        _, _, globals_ = result.stdout.partition("Global options")
        for option in ("--plain-http", "--concurrency", "--retries", "-q, --quiet"):
            assert option in globals_, (words, result.stdout)
        assert "--version" not in globals_
    copy_help = mirror("copy", "--help").stdout
    assert copy_help.count("--json") == 1  # its own, not listed again


# -q silences reports of what was done, never a dry run's plan


def test_quiet_dry_runs_still_print_their_plan(registry: Registry, tmp_path: Path) -> None:
    for tag in ("v1", "v2"):
        copied = mirror("--plain-http", "copy", SINGLE, f"docker://{registry.host}/quiet/p:{tag}")
        assert copied.returncode == 0, copied.stderr
    config = tmp_path / "sync.toml"
    config.write_text(
        f'[registries."{registry.host}"]\nplain_http = true\n'
        f'[[jobs]]\nsource = "{registry.host}/quiet/p"\ndestination = "oci:{tmp_path / "b"}"\n'
    )
    sync = mirror("-q", "sync", "--dry-run", str(config))
    assert sync.returncode == 0, sync.stderr
    planned = [line for line in sync.stdout.splitlines() if line.startswith("planned")]
    assert len(planned) == 2, sync.stdout
    assert not (tmp_path / "b").exists()
    layout = tmp_path / "layout"  # gc takes the layout's locks: not in the committed fixture
    shutil.copytree(LAYOUT, layout)
    gc = mirror("-q", "layout", "gc", "--dry-run", str(layout))
    assert gc.returncode == 0, gc.stderr
    assert "would remove 0 blobs" in gc.stdout
    prune = mirror("-q", "prune", f"{registry.host}/quiet/p", "--keep", "0", "--dry-run")
    assert prune.returncode == 0, prune.stderr
    assert "would delete" in prune.stdout
    done = mirror("-q", "prune", f"{registry.host}/quiet/p", "--keep", "0")
    assert (done.returncode, done.stdout) == (0, "")  # what was done: silenced


# a usage error comes before any work, and says what would be accepted


def test_bundle_push_refuses_a_destination_before_reading_the_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"  # were it read first, this would be the error
    junk.write_bytes(b"not a tar" * 200)
    for destination in ("oci:./x", "./x", "oci-archive:x.tar", "h.example.com/x:tag"):
        result = mirror("bundle", "push", str(junk), destination)
        assert result.returncode == 2, (destination, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "REGISTRY[/PREFIX]" in result.stderr, result.stderr
        assert "tar" not in result.stderr.replace(destination, ""), result.stderr
    assert not (tmp_path / "x").exists()


def test_every_says_the_least_it_accepts(tmp_path: Path) -> None:
    config = tmp_path / "sync.toml"
    config.write_text('[[jobs]]\nsource = "h.example.com/a"\ndestination = "oci:x"\n')
    for given in ("0s", "500ms"):
        result = mirror("sync", str(config), "--every", given)
        assert result.returncode == 2
        assert "at least 1s" in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr


# one of a thing is not "1 things"


def test_counts_of_one_are_singular(registry: Registry, tmp_path: Path) -> None:
    source = tmp_path / "src"
    writer = LayoutWriter(source)
    files = [{"f": b"shared layer"}]
    writer.name(image(writer, files, created="2024-01-01T00:00:00Z"), "a")
    writer.name(image(writer, files, created="2024-01-02T00:00:00Z"), "b")  # a new config only
    writer.close()
    dest = f"oci:{tmp_path / 'dest'}"
    assert mirror("copy", f"oci:{source}:a", f"{dest}:a").returncode == 0
    second = mirror("copy", f"oci:{source}:b", f"{dest}:b")
    assert second.returncode == 0, second.stderr
    assert "1 blob copied (" in second.stdout, second.stdout
    assert "1 already there" in second.stdout, second.stdout
    (tmp_path / "dest" / "blobs" / "sha256" / ("0" * 64)).write_bytes(b"stray")
    gc = mirror("layout", "gc", "--dry-run", str(tmp_path / "dest"))
    assert "would remove 1 blob (5 bytes) and 0 temporary files" in gc.stdout, gc.stdout
    pushed = mirror("--plain-http", "copy", SINGLE, f"docker://{registry.host}/one/img:v1")
    assert pushed.returncode == 0, pushed.stderr
    bundle = mirror("bundle", "create", str(tmp_path / "b.tar"), f"{registry.host}/one/img:v1")
    assert bundle.returncode == 0, bundle.stderr
    assert ": 1 image, " in bundle.stdout, bundle.stdout
