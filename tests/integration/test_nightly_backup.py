"""A nightly backup that runs for a month (issue 26, item 1): each night a new image is pushed
to the real registry under tags that move (`latest`, `1`) and a tag of its own (`night-N`),
with a cosign signature; the image of two nights ago leaves the source. A sync with
`delete = true` and `keep_untagged = 2` copies the repository into a layout, `layout gc`
follows. The layout stays the size of what is named plus the two newest untagged images, and
`layout verify --strict` finds nothing wrong, night after night."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import mirror
from fixtures.generate import LayoutWriter, image
from mirror.layout import Layout, gc, verify
from mirror.oci.attached import subject_of_tag
from mirror.oci.digest import Digest
from mirror.oci.model import ManifestLike
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions, Repository
from mirror.sync.config import load_config
from mirror.sync.run import run_sync
from tests.support.artifacts import cosign_signature
from tests.support.registry import Registry
from tests.support.tools import mirror as mirror_cli

NIGHTS = 30
KEEP_UNTAGGED = 2
REPOSITORY = "nightly/web"
ONCE = "nightly/once"
BASE = random.Random(0).randbytes(48 * 1024)  # the base layer every night's image shares


@asynccontextmanager
async def _repository(host: str, name: str = REPOSITORY) -> AsyncIterator[Repository]:
    async with RegistryClient(RegistryOptions(use_docker_config=False)) as client:
        yield client.repository(RegistryReference(host, name), writing=True)


async def _push_night(
    registry: Registry, night: int, work: Path, repository: str = REPOSITORY
) -> ManifestLike:
    """Build the night's image, push it under latest, 1 and night-N, sign it (cosign)."""
    writer = LayoutWriter(work / f"night-{night}")
    own = random.Random(night).randbytes(32 * 1024)
    desc = image(writer, [{"base": BASE}, {"own": own}], created=f"2026-01-01T00:00:{night:02d}Z")
    writer.name(desc, "n")
    writer.close()
    for tag in (f"night-{night}", "latest", "1"):
        await mirror.copy(
            f"oci:{writer.root}:n",
            f"docker://{registry.host}/{repository}:{tag}",
            options=RegistryOptions(use_docker_config=False),
        )
    async with _repository(registry.host, repository) as repo:
        pushed = await repo.manifest_get("latest")
        await cosign_signature(repo, pushed, f'"night {night}"'.encode())
    return pushed


def _blob_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())


async def test_a_month_of_nightly_backups_stays_the_size_of_what_is_named(
    registry: Registry, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    config_path = tmp_path / "backup.toml"
    config_path.write_text(
        f"""
[defaults]
referrers = true
keep_untagged = {KEEP_UNTAGGED}
[[jobs]]
source = "{registry.host}/{REPOSITORY}"
destination = "oci:{backup}"
delete = true
"""
    )
    config = load_config(config_path)
    images: dict[int, str] = {}
    sizes: list[int] = []
    for night in range(1, NIGHTS + 1):
        images[night] = str((await _push_night(registry, night, tmp_path)).digest)
        if night > 2:  # the image of two nights ago leaves the source (its tags go with it)
            async with _repository(registry.host) as repo:
                await repo.manifest_delete(Digest(images[night - 2]))
        report = await run_sync(config)
        assert not report.failed, [i.error for i in report.images if i.error]
        async with await Layout.open(backup) as layout:
            await gc(layout)
            assert await verify(layout, strict=True) == [], f"night {night}"
            entries = await layout.images()
        named = {e.name: str(e.descriptor.digest) for e in entries if e.name}
        unnamed = [str(e.descriptor.digest) for e in entries if e.name is None]
        tops = {d for n, d in named.items() if subject_of_tag(n) is None}
        # what the source names now, under the same names
        expected = {f"{REPOSITORY}:{t}": images[night] for t in ("latest", "1")}
        expected |= {f"{REPOSITORY}:night-{n}": images[n] for n in (night - 1, night) if n > 0}
        assert {n: d for n, d in named.items() if subject_of_tag(n) is None} == expected
        # the newest untagged images, each once, never one that is still named
        retained = [images[n] for n in (night - 3, night - 2) if n > 0]
        assert sorted(unnamed) == sorted(retained), f"night {night}"
        # signatures of exactly the images kept, and of no image that left
        signed = {str(subject_of_tag(n)) for n in named if subject_of_tag(n) is not None}
        assert signed == tops | set(retained), f"night {night}"
        sizes.append(_blob_bytes(backup))
    # from the fifth night on the same: each night's image is the same size as the last (but
    # for a few bytes of compressed random data and numbers in its config and signature)
    assert max(sizes[4:]) - min(sizes[4:]) < 256, sizes
    assert max(sizes) < 5 * len(BASE), sizes  # one base layer and four images of 32 KiB
    listing = mirror_cli("--json", "layout", "ls", str(backup))
    assert len(json.loads(listing.stdout)) == 4 + 4 + 2  # 4 names, 4 signatures, 2 untagged
    strict = mirror_cli("layout", "verify", "--strict", str(backup))
    assert strict.returncode == 0, strict.stderr
    again = mirror_cli("layout", "gc", str(backup))
    assert again.stdout.startswith("removed 0 blobs"), again.stdout


async def test_a_deleted_tag_takes_its_signature_out_of_the_layout(
    registry: Registry, tmp_path: Path
) -> None:
    """Without retention, a tag that left the source leaves the layout with what was attached
    to its image; the dry run says so first, and gc frees all of it."""
    pushed = await _push_night(registry, 1, tmp_path, ONCE)
    backup = tmp_path / "backup"
    (tmp_path / "once.toml").write_text(
        f"""
[defaults]
referrers = true
[[jobs]]
source = "{registry.host}/{ONCE}"
destination = "oci:{backup}"
delete = true
[jobs.tags]
include = ["^night-1$"]
"""
    )
    config = load_config(tmp_path / "once.toml")
    assert not (await run_sync(config)).failed
    signature = f"{ONCE}:sha256-{pushed.digest.encoded}.sig"
    async with await Layout.open(backup) as layout:
        assert {i.name for i in await layout.images()} == {f"{ONCE}:night-1", signature}
    async with _repository(registry.host, ONCE) as repo:
        await repo.manifest_delete(pushed.digest)
    expected = {f"oci:{backup}:{ONCE}:night-1", f"oci:{backup}:{signature}"}
    planned = await run_sync(config, dry_run=True)
    assert {i.destination for i in planned.images if i.status == "would-delete"} == expected
    done = await run_sync(config)
    assert {i.destination for i in done.images if i.status == "deleted"} == expected
    async with await Layout.open(backup) as layout:
        assert await layout.images() == []
        freed = await gc(layout)
    assert len(freed.removed) >= 6  # the image (manifest, config, 2 layers) and its signature
    assert _blob_bytes(backup) == 0
