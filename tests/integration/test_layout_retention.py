"""What leaves a layout's `index.json` (issue 26, item 1): an image whose last name moved or was
deleted (unless `keep_untagged` keeps the newest few of its repository), the fallback and
digest tags of what left, and `mirror delete oci:DIR:REF|@DIGEST`; `layout gc` then frees
their blobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirror.layout import Layout, gc, verify
from mirror.oci.model import ManifestLike, fallback_tag
from tests.support.artifacts import SBOM, attach, cosign_signature, list_by_fallback
from tests.support.layouts import copy_image
from tests.support.tools import FIXTURES, mirror

KINDS = ("oci-single", "docker-v2", "multi-arch", "artifact")  # four distinct images


def _entries(path: Path) -> list[dict[str, Any]]:
    return list(json.loads((path / "index.json").read_bytes())["manifests"])


def _names(path: Path) -> dict[str | None, str]:
    """Each entry's name (None: unnamed) and digest."""
    out: dict[str | None, str] = {}
    for entry in _entries(path):
        name = entry.get("annotations", {}).get("org.opencontainers.image.ref.name")
        out[name] = str(entry["digest"])
    return out


async def _gc_and_verify(path: Path) -> int:
    """Collect the layout's garbage; the blobs removed. It verifies clean afterwards."""
    async with await Layout.open(path) as layout:
        report = await gc(layout)
        assert await verify(layout, strict=True) == []
    return len(report.removed)


async def test_a_moved_name_takes_its_old_image_out_and_gc_frees_it(tmp_path: Path) -> None:
    out = tmp_path / "l"
    first = await copy_image(FIXTURES / "oci-single", "v1", out, "app:1")
    second = await copy_image(FIXTURES / "docker-v2", "v1", out, "app:1")
    assert [e["digest"] for e in _entries(out)] == [str(second.digest)]
    assert await _gc_and_verify(out) == 3  # the old image's manifest, config and layer
    assert str(first.digest) not in str(list((out / "blobs").rglob("*")))


async def test_a_moved_name_leaves_no_unnamed_copy_of_an_image_named_elsewhere(
    tmp_path: Path,
) -> None:
    out = tmp_path / "l"
    first = await copy_image(FIXTURES / "oci-single", "v1", out, "app:1")
    await copy_image(FIXTURES / "oci-single", "v1", out, "app:latest")
    second = await copy_image(FIXTURES / "docker-v2", "v1", out, "app:1")
    assert _names(out) == {"app:latest": str(first.digest), "app:1": str(second.digest)}
    assert await _gc_and_verify(out) == 0


async def test_keep_untagged_keeps_the_newest_untagged_images_of_each_repository(
    tmp_path: Path,
) -> None:
    from mirror.layout.index_file import UNTAGGED_FROM  # new with retention

    out = tmp_path / "l"
    copied = [await copy_image(FIXTURES / kind, "v1", out, None) for kind in KINDS]
    for manifest in copied:  # one name moved through four images, and another repository
        async with await Layout.open(out, create=True) as layout:
            layout.retention.per_repository["app"] = 2
            await layout.add_image(manifest.descriptor(), "app:1")
            await layout.add_image(copied[0].descriptor(), "other:1")
    entries = _entries(out)
    unnamed = [e for e in entries if "org.opencontainers.image.ref.name" not in str(e)]
    # the two newest images that lost their name, oldest first, marked with the name they had
    assert [e["digest"] for e in unnamed] == [str(copied[1].digest), str(copied[2].digest)]
    assert all(e["annotations"][UNTAGGED_FROM] == "app:1" for e in unnamed)
    assert _names(out)["app:1"] == str(copied[3].digest)
    # named again, an untagged image is named, not listed twice
    async with await Layout.open(out) as layout:
        await layout.add_image(copied[2].descriptor(), "app:2")
    assert [e["digest"] for e in _entries(out)].count(str(copied[2].digest)) == 1
    # without retention, the next move lets the untagged images of that repository go
    async with await Layout.open(out) as layout:
        await layout.add_image(copied[0].descriptor(), "app:1")
    assert None not in _names(out)
    assert await _gc_and_verify(out) > 0


async def _signed(layout: Layout, subject: ManifestLike) -> tuple[str, ...]:
    """Attach to `subject` an SBOM listed under its fallback tag, a cosign signature, and a
    referrer of the SBOM under the SBOM's fallback tag; their names."""
    sbom = await attach(layout, subject, b'{"spdxVersion":"SPDX-2.3"}', artifact_type=SBOM)
    await list_by_fallback(layout, subject, [sbom])
    below = await attach(layout, sbom.manifest, b"on the sbom", artifact_type=SBOM)
    await list_by_fallback(layout, sbom.manifest, [below])
    await cosign_signature(layout, subject, b'"signed"')
    return (
        fallback_tag(subject.digest),
        fallback_tag(sbom.manifest.digest),
        f"{fallback_tag(subject.digest)}.sig",
    )


async def test_fallback_and_digest_tags_go_with_their_subject(tmp_path: Path) -> None:
    out = tmp_path / "l"
    multi = await copy_image(FIXTURES / "multi-arch", "v1", out, "1")
    single = await copy_image(FIXTURES / "oci-single", "v1", out, "2")
    async with await Layout.open(out) as layout:
        of_single = await _signed(layout, single)
        child = await layout.manifest_get(str(multi.children[0].digest))
        of_child = await _signed(layout, child)  # a platform's manifest of the named index
    # "2" moves away: what was attached to its image goes too, and the referrers' blobs free
    await copy_image(FIXTURES / "docker-v2", "v1", out, "2")
    names = set(_names(out))
    assert names.isdisjoint(of_single)
    assert set(of_child) <= names  # the index named "1" still holds the child they are about
    # a retained untagged image keeps what is attached to it ...
    async with await Layout.open(out, create=True) as layout:
        layout.retention.default = 1
        await layout.add_image(single.descriptor(), "1")
    assert _names(out)[None] == str(multi.digest)
    assert set(of_child) <= set(_names(out))
    # ... until it goes: then they go with it
    async with await Layout.open(out, create=True) as layout:
        await layout.remove_image("2")
    assert None not in _names(out)
    assert set(of_child).isdisjoint(_names(out))
    assert await _gc_and_verify(out) > 3


def test_mirror_delete_takes_a_layout_name_or_a_digest(tmp_path: Path) -> None:
    out = tmp_path / "l"
    for kind, name in (("oci-single", "1"), ("oci-single", "latest"), ("docker-v2", "2")):
        done = mirror("copy", f"oci:{FIXTURES / kind}:v1", f"oci:{out}:app:{name}")
        assert done.returncode == 0, done.stderr
    digests = _names(out)
    by_name = mirror("delete", f"oci:{out}:app:2")
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout.strip() == "deleted tag app:2"
    by_digest = mirror("delete", f"oci:{out}@{digests['app:1']}")
    assert by_digest.returncode == 0, by_digest.stderr
    assert by_digest.stdout.strip() == f"deleted manifest {digests['app:1']} (app:1, app:latest)"
    assert _entries(out) == []
    gone = mirror("delete", f"oci:{out}:app:2")
    assert gone.returncode == 1
    assert gone.stderr.splitlines() == [f"mirror: error: no image named 'app:2' in layout {out}"]
    unnamed = mirror("delete", f"oci:{out}")
    assert unnamed.returncode == 1
    assert "name a tag or a digest" in unnamed.stderr
    freed = mirror("layout", "gc", str(out))
    assert freed.stdout.startswith("removed 6 blobs"), freed.stdout
