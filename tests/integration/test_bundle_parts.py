"""Split bundles: parts that each verify alone, pushed from any order, a missing or damaged
part named in one line, parts of another set refused (issue 28)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

import mirror
from fixtures.generate import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, LayoutWriter, image
from mirror.archive.bundle import create_bundle, verify_bundle
from mirror.archive.parts import open_parts
from mirror.errors import InvalidReference, LayoutError
from tests.support.registry import Registry
from tests.support.serving import serving
from tests.support.tools import FIXTURES, amirror, skopeo

SMALL_PART = 24_000


async def _seed(registry: Registry, repo: str) -> list[str]:
    """The four fixtures under `repo`/…; their registry names."""
    names = []
    for kind in ("oci-single", "multi-arch", "docker-v2", "artifact"):
        names.append(f"{registry.host}/{repo}/{kind}:v1")
        await mirror.copy(f"oci:{FIXTURES / kind}:v1", f"docker://{names[-1]}")
    return names


def _record(part: Path) -> dict[str, object]:
    with tarfile.open(part) as tar:
        first = tar.getmembers()[0]
        assert first.name == "mirror-bundle.json"
        data = tar.extractfile(first)
        assert data is not None
        record: dict[str, object] = json.loads(data.read())
        return record


def _complete_in(part: Path) -> list[str]:
    images = _record(part)["images"]
    assert isinstance(images, list)
    return [str(i["name"]) for i in images]


def _flip_inside_a_blob(part: Path) -> None:
    with tarfile.open(part) as tar:
        member = max(
            (m for m in tar.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size
        )
        offset = member.offset_data + member.size // 2
    data = bytearray(part.read_bytes())
    data[offset] ^= 0x01
    part.write_bytes(bytes(data))


async def _digests(names: list[str]) -> dict[str, str]:
    return {name: (await mirror.inspect(f"docker://{name}")).digest for name in names}


def _pushed_name(registry: Registry, name: str, prefix: str) -> str:
    return f"{registry.host}/{prefix}/{name.split('/', 1)[1]}"


async def _split_set(registry: Registry, repo: str, out: Path) -> tuple[list[str], list[Path]]:
    """The four fixtures seeded under `repo` and bundled into `out` in parts of SMALL_PART;
    their registry names and the parts."""
    names = await _seed(registry, repo)
    record, _ = await create_bundle(out, names, max_part_size=SMALL_PART)
    return names, record.part_files


def _holding_an_image(parts: list[Path]) -> tuple[Path, int]:
    """The first part that holds an image complete, and its number in the set."""
    part = next(p for p in parts if _complete_in(p))
    return part, parts.index(part) + 1


async def _pushed_all_but(
    registry: Registry, names: list[str], prefix: str, absent: Collection[str]
) -> dict[str, str]:
    """Every image of `names` is under `prefix` of `registry` with its source's digest, but
    those of `absent`, which are not there at all; the sources' digests by name."""
    source = await _digests(names)
    for name in names:
        target = f"docker://{_pushed_name(registry, name, prefix)}"
        if name in absent:
            with pytest.raises(mirror.NotFound):
                await mirror.inspect(target)
        else:
            assert (await mirror.inspect(target)).digest == source[name]
    return source


async def test_parts_each_verify_alone_and_push_from_any_order(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    names = await _seed(registry, "parts")
    out = tmp_path / "set.tar"
    made = await amirror("bundle", "create", "--max-part-size", f"{SMALL_PART}B", str(out), *names)
    assert made.returncode == 0, made.stderr
    parts = sorted(tmp_path.glob("set.tar.part-*"))
    assert len(parts) > 1
    assert not out.exists()
    assert [p.name for p in parts] == [f"set.tar.part-{n:04d}" for n in range(1, len(parts) + 1)]
    assert all(p.stat().st_size <= SMALL_PART for p in parts)
    held: dict[str, Path] = {}
    for part in parts:
        assert await verify_bundle(part) == []  # a plain bundle of its own
        alone = await amirror("bundle", "verify", str(part))
        assert alone.returncode == 0, alone.stderr
        number = int(part.name.rsplit("-", 1)[1])
        assert f"part {number} of {len(parts)} of set.tar" in alone.stdout
        for name in _complete_in(part):
            assert name in alone.stdout
            held.setdefault(name, part)
    assert set(held) == set(names)  # at this size every image is complete in one part

    # skopeo reads an image from the one part that holds it
    name, part = next((n, p) for n, p in held.items() if "oci-single" in n)
    skopeo("copy", f"oci-archive:{part}:{name}", f"oci:{tmp_path / 'by-skopeo'}:x")
    raw = skopeo("inspect", "--raw", f"oci:{tmp_path / 'by-skopeo'}:x").stdout.encode()
    assert str(mirror.Digest.of(raw)) == (await mirror.inspect(f"docker://{name}")).digest
    # and mirror reads one in place (ArchiveReader), from the part that holds it alone
    name, part = next((n, p) for n, p in held.items() if "multi-arch" in n)
    copied = await mirror.copy(f"oci-archive:{part}:{name}", f"oci:{tmp_path / 'by-mirror'}:y")
    assert copied.digest == (await mirror.inspect(f"docker://{name}")).digest

    shuffled = parts[:]
    random.Random(28).shuffle(shuffled)
    everything = await amirror("bundle", "verify", *map(str, shuffled))
    assert everything.returncode == 0, everything.stderr
    as_json = json.loads((await amirror("--json", "bundle", "verify", *map(str, shuffled))).stdout)
    assert as_json["ok"] is True
    assert sorted(n for p in as_json["parts"] for n in p["complete"]) == sorted(names)
    assert [p["part"] for p in as_json["parts"]] == list(range(1, len(parts) + 1))
    listed = await amirror("bundle", "ls", str(shuffled[0]))
    assert all(n in listed.stdout for n in names)
    pushed = await amirror("bundle", "push", *map(str, shuffled), f"{second_registry.host}/from")
    assert pushed.returncode == 0, pushed.stderr
    await _pushed_all_but(second_registry, names, "from", ())


async def test_a_missing_part_is_named_and_the_complete_images_are_pushed(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    names, parts = await _split_set(registry, "gone", tmp_path / "set.tar")
    gone, number = _holding_an_image(parts)
    lost = _complete_in(gone)
    gone.unlink()
    rest = [p for p in parts if p != gone][::-1]
    verified = await amirror("bundle", "verify", *map(str, rest))
    assert verified.returncode == 1
    assert verified.stderr.count("\n") == 1, verified.stderr
    assert f"part {number} of {len(parts)} is missing" in verified.stderr
    assert "set.tar" in verified.stderr

    pushed = await amirror("bundle", "push", *map(str, rest), f"{second_registry.host}/partial")
    assert pushed.returncode == 1
    assert pushed.stderr.count("\n") == 1, pushed.stderr
    assert f"part {number} of {len(parts)} is missing" in pushed.stderr
    assert all(name in pushed.stderr for name in lost)
    await _pushed_all_but(second_registry, names, "partial", lost)

    async def opened() -> list[int]:
        return (await open_parts(rest)).missing

    assert await opened() == [number]


async def test_a_damaged_part_is_named_in_one_line(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    names, parts = await _split_set(registry, "flip", tmp_path / "set.tar")
    damaged, number = _holding_an_image(parts)
    _flip_inside_a_blob(damaged)
    alone = await amirror("bundle", "verify", str(damaged))
    assert alone.returncode == 1
    assert alone.stderr.count("\n") == 1, alone.stderr
    assert f"part {number} of {len(parts)} of set.tar" in alone.stderr
    assert "damaged" in alone.stderr
    shuffled = parts[::-1]
    verified = await amirror("bundle", "verify", *map(str, shuffled))
    assert (verified.returncode, verified.stderr.count("\n")) == (1, 1), verified.stderr
    assert f"part {number} of {len(parts)} of set.tar" in verified.stderr
    pushed = await amirror("bundle", "push", *map(str, shuffled), f"{second_registry.host}/dmg")
    assert (pushed.returncode, pushed.stderr.count("\n")) == (1, 1), pushed.stderr
    assert f"part {number} of {len(parts)} of set.tar" in pushed.stderr
    await _pushed_all_but(second_registry, names, "dmg", _complete_in(damaged))


async def test_a_part_of_another_set_is_refused(registry: Registry, tmp_path: Path) -> None:
    names = await _seed(registry, "mixed")
    first, _ = await create_bundle(tmp_path / "a.tar", names, max_part_size=SMALL_PART)
    second, _ = await create_bundle(tmp_path / "b.tar", names, max_part_size=SMALL_PART)
    mixed = [first.part_files[0], second.part_files[1]]
    for command in (["verify"], ["ls"], ["push"]):
        args = [*command, *map(str, mixed)] + (
            [f"{registry.host}/x"] if command == ["push"] else []
        )
        result = await amirror("bundle", *args)
        assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
        assert "different sets" in result.stderr
    with pytest.raises(LayoutError, match="different sets"):
        await open_parts(mixed)
    # the same part twice is one part; two files claiming one number are refused
    again = await open_parts([first.part_files[0], first.part_files[0]])
    assert len(again.readers) == 1
    copy = tmp_path / "copy-of-part-1"
    copy.write_bytes(first.part_files[0].read_bytes())
    with pytest.raises(LayoutError, match="given twice"):
        await open_parts([first.part_files[0], copy])


async def test_a_size_too_small_for_a_blob_is_refused_naming_it(
    registry: Registry, tmp_path: Path
) -> None:
    names = await _seed(registry, "tiny")
    result = await amirror(
        "bundle", "create", "--max-part-size", "12kB", str(tmp_path / "t.tar"), *names
    )
    assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
    assert "does not fit in a part" in result.stderr
    assert "sha256:" in result.stderr
    assert not list(tmp_path.glob("t.tar*"))
    zst = await amirror(
        "bundle", "create", "--max-part-size", "4.7GB", str(tmp_path / "t.tar.zst"), *names
    )
    assert (zst.returncode, zst.stderr.count("\n")) == (1, 1), zst.stderr
    assert "plain tar" in zst.stderr
    with pytest.raises(InvalidReference, match="does not fit"):
        await create_bundle(tmp_path / "u.tar", names, max_part_size=12_000)


async def test_a_blob_too_large_is_told_before_the_next_image_is_fetched(
    registry: Registry, tmp_path: Path
) -> None:
    root = tmp_path / "src"
    writer = LayoutWriter(root)
    writer.name(image(writer, [{"big": random.Random(2).randbytes(40_000)}]), "v1")
    writer.close()
    first = f"{registry.host}/early/big:v1"
    await mirror.copy(f"oci:{root}:v1", f"docker://{first}")
    never = f"{registry.host}/early/never-pushed:v1"  # reached, it would be NotFound
    with pytest.raises(InvalidReference, match=f"of {first} is .* does not fit"):
        await create_bundle(tmp_path / "e.tar", [first, never], max_part_size=30_000)


async def test_delta_and_recompressed_bundles_split_into_parts(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    root = tmp_path / "src"
    writer = LayoutWriter(root)
    base = {"bin/app": random.Random(1).randbytes(30_000)}
    writer.name(image(writer, [base, {"etc/v": b"1\n"}]), "v1")
    writer.name(image(writer, [base, {"etc/v": b"2\n"}]), "v2")
    writer.close()
    names = []
    for tag in ("v1", "v2"):
        names.append(f"{registry.host}/delta/app:{tag}")
        await mirror.copy(f"oci:{root}:{tag}", f"docker://{names[-1]}")
    full, _ = await create_bundle(tmp_path / "full.tar", names[:1], max_part_size=SMALL_PART * 2)
    pushed = await amirror("bundle", "push", *map(str, full.part_files), second_registry.host)
    assert pushed.returncode == 0, pushed.stderr
    delta, _ = await create_bundle(
        tmp_path / "delta.tar", names, since=full.part_files[0], max_part_size=SMALL_PART
    )
    assert delta.omitted  # the base layer the first set carried
    pushed = await amirror("bundle", "push", *map(str, delta.part_files), second_registry.host)
    assert pushed.returncode == 0, pushed.stderr
    for name in names:
        copy = f"docker://{second_registry.host}/{name.split('/', 1)[1]}"
        assert (await mirror.inspect(copy)).digest == (
            await mirror.inspect(f"docker://{name}")
        ).digest

    zstd, _ = await create_bundle(
        tmp_path / "zstd.tar", names, recompress="zstd", max_part_size=SMALL_PART * 2
    )
    assert zstd.recompressed
    for part in zstd.part_files:
        assert await verify_bundle(part) == []
    pushed = await amirror(
        "bundle", "push", *map(str, zstd.part_files[::-1]), f"{second_registry.host}/zstd"
    )
    assert pushed.returncode == 0, pushed.stderr
    for image_record in zstd.images:
        copy = f"docker://{_pushed_name(second_registry, image_record.name, 'zstd')}"
        assert (await mirror.inspect(copy)).digest == image_record.digest


def _gzip_random(seed: int, size: int) -> Iterator[bytes]:
    """`size` random bytes, gzip-compressed as they are made (a real gzip stream)."""
    rng = random.Random(seed)
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    left = size
    while left:
        chunk = rng.randbytes(min(4 << 20, left))
        left -= len(chunk)
        yield packer.compress(chunk)
    yield packer.flush()


def _gzip_image(writer: LayoutWriter, seeds: list[int], size: int, tag: str) -> None:
    layers = [writer.stream_blob(_gzip_random(s, size), OCI_LAYER_GZIP) for s in seeds]
    config = writer.json_blob(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": [
                    f"sha256:{hashlib.sha256(str(s).encode()).hexdigest()}" for s in seeds
                ],
            },
        },
        OCI_CONFIG,
    )
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
    writer.name(writer.json_blob(manifest, OCI_MANIFEST), tag)


async def test_two_hundred_mib_in_64_mib_parts(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    mib = 1 << 20
    root = tmp_path / "big"
    writer = LayoutWriter(root)
    _gzip_image(writer, [1, 2], 40 * mib, "a")  # 80 MiB: more than a part holds
    _gzip_image(writer, [3], 50 * mib, "b")
    _gzip_image(writer, [1, 4], 20 * mib + 7, "c")  # shares nothing by size with a's
    _gzip_image(writer, [5], 30 * mib, "d")
    writer.close()
    names = []
    for tag in ("a", "b", "c", "d"):
        names.append(f"{registry.host}/big/{tag}:1")
        await mirror.copy(f"oci:{root}:{tag}", f"docker://{names[-1]}")
    out = tmp_path / "set.tar"
    made = await amirror("bundle", "create", "--max-part-size", "64MiB", str(out), *names)
    assert made.returncode == 0, made.stderr
    parts = sorted(tmp_path.glob("set.tar.part-*"))
    assert all(p.stat().st_size <= 64 * mib for p in parts)
    assert sum(p.stat().st_size for p in parts) > 200 * mib
    complete = {n for p in parts for n in _complete_in(p)}
    assert f"{registry.host}/big/a:1" not in complete  # spread over parts
    assert complete == set(names) - {f"{registry.host}/big/a:1"}
    shuffled = parts[:]
    random.Random(64).shuffle(shuffled)
    verified = await amirror("bundle", "verify", *map(str, shuffled))
    assert verified.returncode == 0, verified.stderr
    pushed = await amirror("bundle", "push", *map(str, shuffled), f"{second_registry.host}/big64")
    assert pushed.returncode == 0, pushed.stderr
    source = await _pushed_all_but(second_registry, names, "big64", ())
    with serving(*map(str, shuffled)) as served:  # served from the parts, in place
        for name in names:
            served_name = f"docker://{served.host}/{name.split('/', 1)[1]}"
            assert (await mirror.inspect(served_name)).digest == source[name]
        spread = f"docker://{served.host}/big/a:1"  # its blobs in more than one part
        pulled = await mirror.copy(spread, f"oci:{tmp_path / 'pulled'}:a")
        assert pulled.digest == source[f"{registry.host}/big/a:1"]


def _rewrite_record(
    part: Path, edit: Callable[[dict[str, Any]], None], drop: str | None = None
) -> None:
    """Edit a part's record and seal it again, as a hostile writer could (and leave out the
    member `drop`)."""
    with tarfile.open(part) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    members = [(m, body) for m, body in members if m.name != drop]
    record = json.loads(members[0][1])
    edit(record)
    contents = record["parts"]["contents"]
    raw = json.dumps(contents, sort_keys=True, separators=(",", ":")).encode()
    record["parts"]["digest"] = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(record).encode()
        members[0][0].size = len(data)
        tar.addfile(members[0][0], io.BytesIO(data))
        for member, body in members[1:]:
            tar.addfile(member, io.BytesIO(body))


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r["parts"].update(count=10**12) or r["parts"]["contents"].update(count=10**12),
        lambda r: r["parts"]["contents"]["blobs"][0].update(parts="1"),
        lambda r: r["parts"]["contents"]["index"][0].update(parts=None),
        lambda r: r["parts"]["contents"]["images"][0].update(needs={"a": 1}),
    ],
    ids=["a trillion parts", "parts as a string", "index parts null", "needs a mapping"],
)
async def test_a_hostile_part_record_is_one_line(
    registry: Registry, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    repo = f"hostile{abs(hash(tmp_path.name)) % 1000}"
    _, parts = await _split_set(registry, repo, tmp_path / "set.tar")
    for part in parts:  # every part of the set edited alike: one seal
        _rewrite_record(part, edit)
    everything = list(map(str, parts))
    for command in (["verify"], ["ls"], ["push", *everything[:1]]):
        result = await amirror("bundle", *command, *everything, f"{registry.host}/hostile")
        if command[0] != "push":
            result = await amirror("bundle", *command, *everything)
        assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
        assert "malformed" in result.stderr


async def test_a_part_that_lacks_what_its_record_says_is_complete_fails_verify(
    registry: Registry, tmp_path: Path
) -> None:
    """A resealed record that no longer lists a blob the part's image needs, and the blob
    taken out: the part's blobs all hash, its index is the set's, yet the image is not whole."""
    _, parts = await _split_set(registry, "liar", tmp_path / "set.tar")
    part, number = _holding_an_image(parts)
    with tarfile.open(part) as tar:
        layer = max(
            (m for m in tar.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size
        )
    digest = "sha256:" + layer.name.rsplit("/", 1)[1]

    def forget(r: dict[str, Any]) -> None:
        for blob in r["parts"]["contents"]["blobs"]:
            if blob["digest"] == digest:
                blob["parts"] = [n for n in blob["parts"] if n != number]

    _rewrite_record(part, forget, drop=layer.name)
    result = await amirror("bundle", "verify", str(part))
    assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
    assert "is not complete in it" in result.stderr


async def test_a_set_written_again_replaces_the_last_sets_parts(
    registry: Registry, tmp_path: Path
) -> None:
    names = await _seed(registry, "again")
    first, _ = await create_bundle(tmp_path / "s.tar", names, max_part_size=SMALL_PART)
    second, _ = await create_bundle(tmp_path / "s.tar", names, max_part_size=10**6)
    assert len(first.part_files) > 1
    assert sorted(tmp_path.glob("s.tar.part-*")) == second.part_files
    verified = await amirror("bundle", "verify", *map(str, second.part_files))
    assert verified.returncode == 0, verified.stderr


async def test_a_whole_bundle_among_parts_is_named_not_a_part(
    registry: Registry, tmp_path: Path
) -> None:
    names, parts = await _split_set(registry, "among", tmp_path / "set.tar")
    await create_bundle(tmp_path / "whole.tar", names)
    for command in ("verify", "ls"):
        given = [str(tmp_path / "whole.tar"), *map(str, parts)]
        result = await amirror("bundle", command, *given)
        assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
        assert "whole.tar is not a part of a split bundle" in result.stderr
        assert "damaged" not in result.stderr
