"""Declarative sync against the real registry: filters, incremental runs, backups and
restores, a broken tag, referrers, shards, concurrent writers, bad configs."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

import mirror
from fixtures.generate import LayoutWriter, image
from mirror.layout import Layout
from mirror.sync.config import load_config
from mirror.sync.run import run_sync
from tests.integration.conftest import full_disk_config
from tests.support.registry import Registry
from tests.support.scripted import FaultProxy
from tests.support.tools import FIXTURES, REPO, amirror, fixture_digest

TAGS = {  # tag -> day it was built
    "v1.0.0": 1,
    "v1.1.0": 2,
    "v1.2.0": 3,
    "v2.0.0": 4,
    "v2.1.0-rc1": 5,
    "dev": 6,
    "latest": 7,
}


@pytest.fixture(scope="module")
def seeded(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """sync/app with the TAGS above (distinct images); tag -> digest."""
    work = tmp_path_factory.mktemp("sync-src")
    digests = {}
    for tag, day in TAGS.items():
        writer = LayoutWriter(work / tag)
        desc = image(writer, [{"tag": tag.encode()}], created=f"2024-03-{day:02d}T00:00:00Z")
        writer.name(desc, "v")
        writer.close()
        target = f"docker://{registry.host}/sync/app:{tag}"
        digests[tag] = asyncio.run(mirror.copy(f"oci:{work / tag}:v", target)).digest
    return digests


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync.toml"
    path.write_text(text)
    return path


async def _with_a_broken_image(source: Path, tags: tuple[str, ...]) -> tuple[Path, mirror.Manifest]:
    """A layout of one image per tag (`app:TAG`), the one tagged `broken` missing a layer;
    the layout and that image."""
    writer = LayoutWriter(source)
    for tag in tags:
        writer.name(image(writer, [{"f": tag.encode()}]), f"app:{tag}")
    writer.close()
    async with await Layout.open(source) as layout:
        broken = await layout.manifest_get("app:broken")
    assert isinstance(broken, mirror.Manifest)
    layout.blob_path(broken.layers[0].digest).unlink()
    return source, broken


async def test_filters_and_a_second_run_that_requests_nothing(
    seeded: dict[str, str], counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    counting, host = counting_proxy
    config = load_config(
        _config(
            tmp_path,
            f"""
[[jobs]]
source = "{host}/sync/app"
destination = "{host}/filtered"
[jobs.tags]
include = ["^v"]
exclude = ["-rc"]
semver = ">=1.1.0, <3.0.0"
""",
        )
    )
    first = await run_sync(config)
    copied = {i.destination.rsplit(":", 1)[1]: i.digest for i in first.images}
    assert copied == {t: seeded[t] for t in ("v1.1.0", "v1.2.0", "v2.0.0")}
    assert {i.status for i in first.images} == {"copied"}
    counting.seen.clear()
    counting.bytes_in = counting.bytes_out = 0
    second = await run_sync(config)
    assert {i.status for i in second.images} == {"up-to-date"}
    gets = [(m, p) for m, p in counting.seen if m == "GET" and "/manifests/" in p]
    blob_requests = [(m, p) for m, p in counting.seen if "/blobs/" in p]
    assert gets == []
    assert blob_requests == []
    assert counting.bytes_in == counting.bytes_out == 0


async def test_a_destination_is_listed_once_instead_of_asked_tag_by_tag(
    seeded: dict[str, str], counting_proxy: tuple[FaultProxy, str], tmp_path: Path
) -> None:
    counting, host = counting_proxy
    job = f'[[jobs]]\nsource = "{host}/sync/app"\ndestination = "{host}/listed"\n'
    counting.seen.clear()
    first = await run_sync(load_config(_config(tmp_path, job + '[jobs.tags]\ninclude = ["^v1"]\n')))
    assert {i.status for i in first.images} == {"copied"}
    assert len(first.images) == 3
    destination = [(m, p) for m, p in counting.seen if p.startswith("/v2/listed/")]
    # a new repository: one listing (and one at the end, for the record of what the run
    # left), no HEAD of a tag or of a small blob
    assert [m for m, p in destination if "/tags/list" in p] == ["GET", "GET"]
    assert [(m, p) for m, p in destination if m == "HEAD"] == []

    counting.seen.clear()
    more = job + '[jobs.tags]\ninclude = ["^v1", "^v2.0"]\n'
    # compared tag by tag (without the flag, the record of the first run stands in for it)
    second = await run_sync(load_config(_config(tmp_path, more)), verify_destination=True)
    status = {i.destination.rsplit(":", 1)[1]: i.status for i in second.images}
    assert status == {
        "v1.0.0": "up-to-date",
        "v1.1.0": "up-to-date",
        "v1.2.0": "up-to-date",
        "v2.0.0": "copied",
    }
    heads = [p for m, p in counting.seen if m == "HEAD" and p.startswith("/v2/listed/")]
    asked_tags = sorted(p.rsplit("/", 1)[1] for p in heads if "/manifests/" in p)
    assert asked_tags == ["v1.0.0", "v1.1.0", "v1.2.0"]  # v2.0.0 is not listed: not asked
    assert any("/blobs/" in p for p in heads)  # not a new repository: blobs are asked first
    assert all(i.digest == seeded[t] for t, i in zip(status, second.images, strict=True))


async def test_newest_by_semver_and_by_time(
    registry: Registry, seeded: dict[str, str], tmp_path: Path
) -> None:
    async def planned(tags_table: str) -> set[str]:
        config = load_config(
            _config(
                tmp_path,
                f"""
[[jobs]]
source = "{registry.host}/sync/app"
destination = "oci:{tmp_path / "unused"}"
[jobs.tags]
{tags_table}
""",
            )
        )
        report = await run_sync(config, dry_run=True)
        return {i.destination.rsplit(":", 1)[1] for i in report.images}

    assert await planned('newest = 2\nnewest_by = "semver"') == {"v2.0.0", "v2.1.0-rc1"}
    assert await planned('newest = 2\nnewest_by = "created"') == {"dev", "latest"}
    assert await planned('include = ["^v1"]\nnewest = 2') == {"v1.1.0", "v1.2.0"}
    assert not (tmp_path / "unused").exists()  # a dry run writes nothing


async def test_backup_a_registry_to_a_layout_and_restore_it(
    registry: Registry, second_registry: Registry, seeded: dict[str, str], tmp_path: Path
) -> None:
    registry.push_fixture("multi-arch", "sync/multi")
    backup = tmp_path / "backup"
    config = load_config(
        _config(
            tmp_path,
            f"""
[[jobs]]
registry = "{registry.host}"
include = ["sync/*"]
destination = "oci:{backup}"
""",
        )
    )
    report = await run_sync(config)
    assert not report.failed
    async with await Layout.open(backup) as layout:
        names = {i.name for i in await layout.images()}
    assert {f"sync/app:{t}" for t in TAGS} | {"sync/multi:v1"} <= names
    restore = load_config(
        _config(
            tmp_path,
            f"""
[[jobs]]
source = "oci:{backup}"
destination = "{second_registry.host}/restored"
""",
        )
    )
    restored = await run_sync(restore)
    assert not restored.failed
    for tag, digest in seeded.items():
        info = await mirror.inspect(f"docker://{second_registry.host}/restored/sync/app:{tag}")
        assert info.digest == digest
    multi = await mirror.inspect(f"docker://{second_registry.host}/restored/sync/multi:v1")
    original = await mirror.inspect(f"docker://{registry.host}/sync/multi:v1")
    assert multi.digest == original.digest


async def test_one_broken_tag_is_reported_and_the_rest_copied(
    registry: Registry, tmp_path: Path
) -> None:
    source, _ = await _with_a_broken_image(tmp_path / "src", ("good1", "broken", "good2"))
    path = _config(
        tmp_path,
        f"""
[[jobs]]
source = "oci:{source}"
destination = "{registry.host}/keepgoing"
""",
    )
    cli = await amirror("--json", "sync", str(path))
    assert cli.returncode == 1
    report = json.loads(cli.stdout)
    statuses = {i["destination"].rsplit(":", 1)[1]: i["status"] for i in report["images"]}
    assert statuses == {"good1": "copied", "good2": "copied", "broken": "failed"}
    assert cli.stderr.count("\n") == 1
    assert "broken" in cli.stderr


async def test_referrers_travel_through_a_layout_via_the_fallback_tag(
    registry: Registry, second_registry: Registry, seeded: dict[str, str], tmp_path: Path
) -> None:
    subject = seeded["v1.0.0"]
    signature = tmp_path / "sig"
    writer = LayoutWriter(signature)
    empty = writer.blob(b"{}", "application/vnd.oci.empty.v1+json")
    payload = writer.blob(b"signature bytes", "application/vnd.example.signature")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": empty,
        "layers": [payload],
        "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": subject,
            "size": 100,
        },
    }
    sig_desc = writer.json_blob(manifest, "application/vnd.oci.image.manifest.v1+json")
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{**sig_desc, "artifactType": "application/vnd.example.signature"}],
    }
    writer.name(writer.json_blob(index, "application/vnd.oci.image.index.v1+json"), "fallback")
    writer.name(sig_desc, "sig")
    writer.close()
    fallback_tag = f"sha256-{subject[7:]}"
    await mirror.copy(
        f"oci:{signature}:sig", f"docker://{registry.host}/ref/app@{sig_desc['digest']}"
    )
    await mirror.copy(
        f"oci:{signature}:fallback", f"docker://{registry.host}/ref/app:{fallback_tag}"
    )
    await mirror.copy(
        f"docker://{registry.host}/sync/app:v1.0.0", f"docker://{registry.host}/ref/app:v1"
    )
    layout = tmp_path / "layout"
    to_layout = load_config(
        _config(
            tmp_path,
            f"""
[defaults]
referrers = true
[[jobs]]
source = "{registry.host}/ref/app"
destination = "oci:{layout}"
[jobs.tags]
include = ["^v1$"]
""",
        )
    )
    assert not (await run_sync(to_layout)).failed
    to_registry = load_config(
        _config(
            tmp_path,
            f"""
[defaults]
referrers = true
[[jobs]]
source = "oci:{layout}"
destination = "{second_registry.host}/back"
[jobs.tags]
include = ["^v1$"]
""",
        )
    )
    assert not (await run_sync(to_registry)).failed
    listing = await mirror.inspect(f"docker://{second_registry.host}/back/ref/app:{fallback_tag}")
    assert [p["digest"] for p in listing.platforms] == [sig_desc["digest"]]
    sig = await mirror.inspect(f"docker://{second_registry.host}/back/ref/app@{sig_desc['digest']}")
    assert sig.artifact_type == "application/vnd.example.signature"


async def test_two_shards_make_one_full_run(
    registry: Registry, seeded: dict[str, str], tmp_path: Path
) -> None:
    for i in range(6):
        await mirror.copy(
            f"docker://{registry.host}/sync/app:v1.0.0",
            f"docker://{registry.host}/shard/repo{i}:v1",
        )
    text = f"""
[[jobs]]
registry = "{registry.host}"
include = ["shard/*"]
destination = "{registry.host}/sharded"
"""
    config = load_config(_config(tmp_path, text))
    full = {i.source for i in (await run_sync(config, dry_run=True)).images}
    one = {i.source for i in (await run_sync(config, dry_run=True, shard=(1, 2))).images}
    two = {i.source for i in (await run_sync(config, dry_run=True, shard=(2, 2))).images}
    assert one | two == full
    assert not one & two
    assert len(full) == 6


async def test_two_sync_processes_into_one_layout_lose_nothing(
    registry: Registry, seeded: dict[str, str], tmp_path: Path
) -> None:
    layout = tmp_path / "one-layout"
    configs = []
    for side, tags in (("left", '["^v1"]'), ("right", '["^v2", "^dev$", "^latest$"]')):
        (tmp_path / side).mkdir()
        configs.append(
            _config(
                tmp_path / side,
                f"""
[[jobs]]
source = "{registry.host}/sync/app"
destination = "oci:{layout}"
[jobs.tags]
include = {tags}
""",
            )
        )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mirror",
            "sync",
            str(c),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for c in configs
    ]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    async with await Layout.open(layout) as opened:
        names = {i.name for i in await opened.images()}
    assert names == {f"sync/app:{t}" for t in TAGS}


JOB = '[[jobs]]\nsource = "h.example.com/a"\ndestination = "oci:DEST"\n'


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (JOB + "bogus = 1\n", "bogus"),
        (JOB + '[jobs.tags]\ninclude = ["(("]\n', "jobs[0].tags.include"),
        (JOB + '[jobs.tags]\nsemver = ">=one"\n', "jobs[0].tags.semver"),
        (
            '[registries."h.example.com"]\nusername_env = "MIRROR_NO_SUCH_USER"\n'
            'password_env = "MIRROR_NO_SUCH_PASS"\n' + JOB,
            "username_env",
        ),
    ],
)
async def test_a_bad_config_is_one_line_naming_the_key(
    tmp_path: Path, body: str, names: str
) -> None:
    dest = tmp_path / "dest"
    result = await amirror("sync", str(_config(tmp_path, body.replace("DEST", str(dest)))))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert names in result.stderr
    assert not dest.exists()


async def test_deletions_are_mirrored_only_when_asked(
    registry: Registry, seeded: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "mirrored"

    def config(tags: str, delete: bool) -> Path:
        return _config(
            tmp_path,
            f"""
[[jobs]]
source = "{registry.host}/sync/app"
destination = "oci:{target}"
delete = {str(delete).lower()}
[jobs.tags]
include = {tags}
""",
        )

    await run_sync(load_config(config('["^v1"]', delete=False)))
    kept = await run_sync(load_config(config('["^v1.2"]', delete=False)))
    assert all(i.status != "deleted" for i in kept.images)
    plan = await run_sync(load_config(config('["^v1.2"]', delete=True)), dry_run=True)
    assert sorted(
        i.destination.rsplit(":", 1)[1] for i in plan.images if i.status == "would-delete"
    ) == [
        "v1.0.0",
        "v1.1.0",
    ]
    done = await run_sync(load_config(config('["^v1.2"]', delete=True)))
    assert sorted(
        i.destination.rsplit(":", 1)[1] for i in done.images if i.status == "deleted"
    ) == [
        "v1.0.0",
        "v1.1.0",
    ]
    async with await Layout.open(target) as layout:
        assert [i.name for i in await layout.images() if i.name] == ["sync/app:v1.2.0"]


async def test_a_dry_run_plans_bytes_and_writes_nothing(
    registry: Registry, seeded: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "never-created"
    config = load_config(
        _config(
            tmp_path,
            f"""
[[jobs]]
source = "{registry.host}/sync/app"
destination = "oci:{target}"
delete = true
[jobs.tags]
include = ["^v1.0.0$"]
""",
        )
    )
    plan = await run_sync(config, dry_run=True)
    [image] = plan.images
    info = await mirror.inspect(f"docker://{registry.host}/sync/app:v1.0.0")
    layers = sum(layer["size"] for layer in info.layers)
    assert image.status == "planned"
    assert image.bytes == layers + info.config["size"]  # the layers and the config
    assert image.digest == seeded["v1.0.0"]
    assert not target.exists()
    cli = await amirror("sync", "--dry-run", str(_config(tmp_path, config_text(registry, target))))
    assert "bytes to move at most" in cli.stdout


def config_text(registry: Registry, target: Path) -> str:
    """A one-tag job into a layout."""
    return (
        f'[[jobs]]\nsource = "{registry.host}/sync/app"\ndestination = "oci:{target}"\n'
        '[jobs.tags]\ninclude = ["^v1.0.0$"]\n'
    )


async def test_a_platform_filter_applies_to_indexes_and_leaves_single_images_whole(
    registry: Registry, tmp_path: Path
) -> None:
    """`platforms` in a sync configuration picks platforms of multi-arch images; an image of
    one platform is copied as it is (the CLI's --platform, by contrast, refuses it)."""
    await mirror.copy(
        f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{registry.host}/sync/single:v1"
    )
    target = tmp_path / "out"
    text = (
        '[defaults]\nplatforms = ["linux/arm64"]\n'
        f'[[jobs]]\nsource = "{registry.host}/sync/single"\ndestination = "oci:{target}"\n'
    )
    result = await amirror("--json", "sync", str(_config(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    [image] = json.loads(result.stdout)["images"]
    assert image["status"] == "copied"
    assert image["digest"] == fixture_digest("oci-single")


async def test_a_job_on_a_full_disk_fails_alone(
    registry: Registry, too_big: str, full_disk: Path, tmp_path: Path
) -> None:
    config = _config(
        tmp_path, full_disk_config(registry.host, full_disk / "backup", tmp_path / "healthy")
    )
    done = await amirror("sync", str(config))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    failures = [line for line in done.stderr.splitlines() if "no space left" in line.lower()]
    assert len(failures) == 1, done.stderr
    assert str(full_disk / "backup") in failures[0]  # the line names the layout
    async with await Layout.open(tmp_path / "healthy") as healthy:
        assert "disk/small:v1" in [i.name for i in await healthy.images()]


async def test_a_failed_image_is_said_once(registry: Registry, tmp_path: Path) -> None:
    """A failure reaches a person once: the report on stdout lists the image as failed, and
    one `mirror: failed:` line on stderr says why (both streams share a terminal)."""
    source, broken = await _with_a_broken_image(tmp_path / "src", ("good", "broken"))
    path = _config(
        tmp_path,
        f"""
[[jobs]]
source = "oci:{source}"
destination = "{registry.host}/said-once"

[[jobs]]
source = "{registry.host}/said-once/nothere"
destination = "oci:{tmp_path / "backup"}"
""",
    )
    cli = await amirror("sync", str(path))
    assert cli.returncode == 1
    both = cli.stdout + cli.stderr
    assert both.count("not known to registry") == 1, both  # the missing repository
    assert both.count(str(broken.layers[0].digest)) == 1, both  # the missing blob
    failed = [line for line in cli.stdout.splitlines() if line.startswith("failed")]
    assert len(failed) == 2, cli.stdout
    assert all(line.startswith("mirror: failed: ") for line in cli.stderr.splitlines()), both
    assert len(cli.stderr.splitlines()) == 2, both
