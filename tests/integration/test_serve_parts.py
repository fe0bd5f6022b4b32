"""`mirror serve` takes the parts of a split bundle in any order (issue 28): served together,
every image pulled with its source's digest; a part removed is named in one warning line and
the images the other parts hold complete are still served."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pytest

import mirror
from mirror.archive.bundle import create_bundle
from tests.support.registry import Registry
from tests.support.serving import serving, start_serve
from tests.support.tools import FIXTURES

KINDS = ("oci-single", "multi-arch", "docker-v2")
SMALL_PART = 24_000


def _complete_in(part: Path) -> list[str]:
    """The images a part's record says it holds complete."""
    with tarfile.open(part) as tar:
        data = tar.extractfile("mirror-bundle.json")
        assert data is not None
        record = json.loads(data.read())
    return [str(i["name"]) for i in record["images"]]


@pytest.fixture
async def parted(registry: Registry, tmp_path: Path) -> tuple[list[Path], dict[str, str]]:
    """A bundle of three fixtures in parts; the parts and each image's served name -> digest."""
    names, digests = [], {}
    for kind in KINDS:
        name = f"{registry.host}/parted/{kind}:v1"
        digests[f"parted/{kind}:v1"] = (
            await mirror.copy(f"oci:{FIXTURES / kind}:v1", f"docker://{name}")
        ).digest
        names.append(name)
    record, _ = await create_bundle(tmp_path / "set.tar", names, max_part_size=SMALL_PART)
    assert len(record.part_files) >= 2
    return record.part_files, digests


async def test_the_parts_given_in_any_order_are_served_as_one_bundle(
    parted: tuple[list[Path], dict[str, str]], tmp_path: Path
) -> None:
    parts, digests = parted
    shuffled = list(parts)
    random.Random(7).shuffle(shuffled)
    with serving(*map(str, shuffled)) as served:
        for i, (name, digest) in enumerate(digests.items()):
            out = tmp_path / f"pulled-{i}"
            result = await mirror.copy(f"docker://{served.host}/{name}", f"oci:{out}:x")
            assert result.digest == digest, name


async def test_a_part_removed_is_named_and_the_rest_still_served(
    parted: tuple[list[Path], dict[str, str]], tmp_path: Path
) -> None:
    parts, digests = parted
    gone = next(p for p in parts if _complete_in(p))
    lost = {n.split("/", 1)[1] for n in _complete_in(gone)}
    gone.unlink()
    served = start_serve(*(str(p) for p in parts if p != gone))
    try:
        for name, digest in digests.items():
            target = f"docker://{served.host}/{name}"
            if name in lost:
                with pytest.raises(mirror.NotFound):
                    await mirror.inspect(target)
            else:
                assert (await mirror.inspect(target)).digest == digest
    finally:
        code, err = served.stop()
    assert code == 0, err
    number = parts.index(gone) + 1
    warnings = [line for line in err.splitlines() if "missing" in line]
    assert len(warnings) == 1, err
    assert f"part {number} of {len(parts)} is missing" in warnings[0]
    assert "serving the images the parts given hold" in warnings[0]


async def test_two_split_bundles_are_served_side_by_side(
    registry: Registry, parted: tuple[list[Path], dict[str, str]], tmp_path: Path
) -> None:
    parts, digests = parted
    other = f"{registry.host}/second/oci-single:v1"
    copied = await mirror.copy(f"oci:{FIXTURES / 'oci-single'}:v1", f"docker://{other}")
    second, _ = await create_bundle(tmp_path / "second.tar", [other], max_part_size=SMALL_PART)
    given = [*second.part_files, *parts]
    random.Random(3).shuffle(given)
    with serving(*map(str, given)) as served:
        for name, digest in {**digests, "second/oci-single:v1": copied.digest}.items():
            assert (await mirror.inspect(f"docker://{served.host}/{name}")).digest == digest
