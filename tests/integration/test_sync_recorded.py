"""A no-op sync asks a registry destination only for its listing when the last run recorded
it (issue 29): what the record saves, and how a destination changed behind mirror's back is
still found — a tag added or removed at once, a tag re-pointed at the next full comparison."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import mirror
from fixtures.generate import LayoutWriter, image
from mirror.sync.config import SyncConfig, load_config
from mirror.sync.run import run_sync
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy
from tests.support.tools import amirror

TAGS = ("a", "b", "c")


@pytest.fixture(scope="module")
def source(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """recorded/app with three distinct images; tag -> digest."""
    work = tmp_path_factory.mktemp("recorded-src")
    digests = {}
    for tag in (*TAGS, "other"):
        writer = LayoutWriter(work / tag)
        writer.name(image(writer, [{"recorded": tag.encode()}]), "v")
        writer.close()
        target = f"docker://{registry.host}/recorded/app:{tag}"
        digests[tag] = asyncio.run(mirror.copy(f"oci:{work / tag}:v", target)).digest
    return digests


def _config(tmp_path: Path, host: str, destination: str, extra: str = "") -> SyncConfig:
    path = tmp_path / "sync.toml"
    path.write_text(
        f"[defaults]\n{extra}\n[[jobs]]\n"
        f'source = "{host}/recorded/app"\ndestination = "{host}/{destination}"\n'
        '[jobs.tags]\ninclude = ["^[abc]$"]\n'
    )
    return load_config(path)


def _destination_requests(proxy: FaultProxy, destination: str) -> list[tuple[str, str]]:
    """The requests to the repository a job with `destination` writes to."""
    prefix = f"/v2/{destination}/recorded/app/"
    return [(m, p) for m, p in proxy.seen if p.startswith(prefix)]


async def test_a_no_op_run_asks_the_destination_only_for_its_listing(
    source: dict[str, str], counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    proxy, host = counting_proxy
    config = _config(tmp_path, host, "rec/noop")
    first = await run_sync(config)
    assert {i.status for i in first.images} == {"copied"}
    proxy.seen.clear()
    again = await run_sync(config)
    assert {i.status for i in again.images} == {"up-to-date"}
    assert {i.destination.rsplit(":", 1)[1]: i.digest for i in again.images} == {
        t: source[t] for t in TAGS
    }
    asked = _destination_requests(proxy, "rec/noop")
    assert asked == [("GET", "/v2/rec/noop/recorded/app/tags/list")]
    at_source = [m for m, p in proxy.seen if p.startswith("/v2/recorded/app/manifests/")]
    assert at_source == ["HEAD"] * len(TAGS)  # the source is still asked, tag by tag

    proxy.seen.clear()
    checked = await run_sync(config, verify_destination=True)
    assert {i.status for i in checked.images} == {"up-to-date"}
    heads = [p for m, p in _destination_requests(proxy, "rec/noop") if m == "HEAD"]
    assert sorted(p.rsplit("/", 1)[1] for p in heads) == sorted(TAGS)


async def test_a_tag_removed_behind_mirrors_back_is_copied_again_at_once(
    source: dict[str, str], counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    _, host = counting_proxy
    config = _config(tmp_path, host, "rec/removed")
    await run_sync(config)
    gone = await amirror("delete", f"docker://{host}/rec/removed/recorded/app:b")
    assert gone.returncode == 0, gone.stderr
    after = await run_sync(config)  # the listing changed: every tag is compared again
    status = {i.destination.rsplit(":", 1)[1]: str(i.status) for i in after.images}
    assert status == {"a": "up-to-date", "b": "copied", "c": "up-to-date"}


async def test_a_tag_re_pointed_behind_mirrors_back_is_found_by_the_full_comparison(
    registry: Registry,
    source: dict[str, str],
    counting_proxy: tuple[FaultProxy, str],
    tmp_path: Path,
) -> None:
    _, host = counting_proxy
    config = _config(tmp_path, host, "rec/repointed")
    await run_sync(config)
    # someone else points b at another image: the listing does not change
    await mirror.copy(
        f"docker://{registry.host}/recorded/app:other",
        f"docker://{registry.host}/rec/repointed/recorded/app:b",
    )
    trusted = await run_sync(config)
    assert {str(i.status) for i in trusted.images} == {"up-to-date"}  # the documented limit
    always = _config(tmp_path, host, "rec/repointed", 'verify_destination_every = "0"')
    found = await run_sync(always)
    status = {i.destination.rsplit(":", 1)[1]: str(i.status) for i in found.images}
    assert status == {"a": "up-to-date", "b": "copied", "c": "up-to-date"}
    held = await mirror.inspect(f"docker://{registry.host}/rec/repointed/recorded/app:b")
    assert held.digest == source["b"]


async def test_the_cli_flag_and_a_bad_period(
    source: dict[str, str], registry: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "sync.toml"
    path.write_text(
        '[defaults]\nverify_destination_every = "soon"\n[[jobs]]\n'
        f'source = "{registry.host}/recorded/app"\ndestination = "{registry.host}/rec/cli"\n'
    )
    bad = await amirror("sync", str(path))
    assert bad.returncode == 1, bad.stderr  # a config error, as every other
    assert bad.stderr.strip().splitlines() == [
        "mirror: error: defaults.verify_destination_every: 'soon' is not a duration like 30m,"
        " 24h or 7d"
    ]
    path.write_text(path.read_text().replace('"soon"', '"12h"'))
    for _ in range(2):
        done = await amirror("--json", "sync", "--verify-destination", str(path))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["summary"].keys() <= {"copied", "up-to-date"}
    both = await amirror("sync", "--verify-destination", "--every", "1m", str(path))
    assert both.returncode == 2
    assert "--verify-destination is for one run" in both.stderr
