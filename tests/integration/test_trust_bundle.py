"""Both sides of the air gap: `bundle create --policy` admits each image and records what
admitted it, carrying the signatures; `bundle push --policy` admits them again, offline, from
what the bundle carries, and refuses a bundle whose signature was removed or altered."""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from mirror.archive.pack import pack_layout
from mirror.archive.unpack import read_record
from tests.support.registry import Registry
from tests.support.signed_images import holds_repository, push_signed, pushed_image, repository
from tests.support.signing import (
    PrivateKey,
    keyed,
    make_key,
    policy_file,
    sign,
    signed,
    write_public,
)
from tests.support.tools import amirror


@pytest.fixture(scope="module")
def signer() -> PrivateKey:
    """The key both sides trust."""
    return make_key("p256")


async def _bundle(
    registry: Registry, tmp_path: Path, signer: PrivateKey, name: str
) -> tuple[Path, Path]:
    """Two signed images in a bundle made with a policy: the bundle and the policy file."""
    images = []
    for tag in ("one", "two"):
        digest = await pushed_image(registry, name, tmp_path, f"{name}-{tag}", tag)
        layer = signed(signer, digest, f"{registry.host}/{name}:{tag}")
        await push_signed(registry.host, name, digest, [layer])
        images.append(f"{registry.host}/{name}:{tag}")
    pub = write_public(signer, tmp_path / "cosign.pub")
    policy = policy_file(tmp_path / "policy.json", {"": keyed(pub)})
    out = tmp_path / "signed.tar"
    made = await amirror("--json", "bundle", "create", str(out), *images, "--policy", str(policy))
    assert made.returncode == 0, made.stderr
    return out, policy


async def _push_admitted(parts: Sequence[Path], target: str, policy: Path) -> None:
    """`bundle push PARTS TARGET --policy POLICY` pushes both images, each admitted by a key."""
    pushed = await amirror(
        "--json", "bundle", "push", *map(str, parts), target, "--policy", str(policy)
    )
    assert pushed.returncode == 0, pushed.stderr
    report = json.loads(pushed.stdout)
    assert [p["admittedBy"]["by"][:11] for p in report] == ["key SHA256:"] * 2


async def _push_refused(parts: Sequence[Path], target: str, policy: Path) -> str:
    """`bundle push PARTS TARGET --policy POLICY` exits 1 saying one line; that line."""
    pushed = await amirror("bundle", "push", *map(str, parts), target, "--policy", str(policy))
    assert pushed.returncode == 1, pushed.stderr
    (line,) = pushed.stderr.strip().splitlines()
    return line


def _tampered(bundle: Path, work: Path, edit: Callable[[Path, dict[str, Any]], None]) -> Path:
    """The bundle unpacked, `edit(layout_dir, index)` applied, packed again with its record."""
    layout = work / "layout"
    with tarfile.open(bundle) as tar:
        tar.extractall(layout, filter="data")
    record = read_record(bundle)
    (layout / "mirror-bundle.json").unlink()
    index = json.loads((layout / "index.json").read_text())
    edit(layout, index)
    (layout / "index.json").write_text(json.dumps(index))
    out = work / "tampered.tar"
    pack_layout(layout, out, compress=False, record=record)
    return out


def _signature_entries(index: dict[str, Any]) -> list[dict[str, Any]]:
    entries = index["manifests"]
    assert isinstance(entries, list)
    return [
        e
        for e in entries
        if str(e.get("annotations", {}).get("org.opencontainers.image.ref.name", "")).endswith(
            ".sig"
        )
    ]


async def test_a_bundle_made_with_a_policy_is_pushed_with_it_on_the_far_side(
    registry: Registry, second_registry: Registry, tmp_path: Path, signer: PrivateKey
) -> None:
    bundle, policy = await _bundle(registry, tmp_path, signer, "gap/app")
    record = read_record(bundle)
    assert record is not None
    assert record["referrers"] is True
    for image in record["images"]:
        assert image["admittedBy"]["by"].startswith("key SHA256:")
    await _push_admitted([bundle], f"{second_registry.host}/far", policy)
    async with repository(second_registry.host, "far/gap/app") as far:
        tags = [t async for t in far.tags()]
    assert {"one", "two"} <= set(tags)
    assert len([t for t in tags if t.endswith(".sig")]) == 2  # the signatures crossed too


async def test_a_bundle_whose_signature_was_removed_is_refused_on_the_far_side(
    registry: Registry, second_registry: Registry, tmp_path: Path, signer: PrivateKey
) -> None:
    bundle, policy = await _bundle(registry, tmp_path, signer, "gap/removed")

    def remove(layout: Path, index: dict[str, Any]) -> None:
        first = _signature_entries(index)[0]
        manifests = index["manifests"]
        assert isinstance(manifests, list)
        manifests.remove(first)

    tampered = _tampered(bundle, tmp_path / "t", remove)
    line = await _push_refused([tampered], f"{second_registry.host}/far2", policy)
    assert "nothing pushed" in line
    assert line.endswith(": no signature")
    assert not holds_repository(second_registry, "far2/gap/removed")


async def test_a_bundle_whose_signature_was_altered_is_refused_on_the_far_side(
    registry: Registry, second_registry: Registry, tmp_path: Path, signer: PrivateKey
) -> None:
    bundle, policy = await _bundle(registry, tmp_path, signer, "gap/altered")
    mallory = make_key("p256")

    def alter(layout: Path, index: dict[str, Any]) -> None:
        """Re-sign the first signature's payload with another key, digests kept consistent."""
        entry = _signature_entries(index)[0]
        path = layout / "blobs" / "sha256" / str(entry["digest"]).split(":")[1]
        manifest = json.loads(path.read_bytes())
        layer = manifest["layers"][0]
        body = (layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
        forged = base64.b64encode(sign(mallory, body)).decode()
        layer["annotations"]["dev.cosignproject.cosign/signature"] = forged
        raw = json.dumps(manifest).encode()
        digest = hashlib.sha256(raw).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(raw)
        entry["digest"], entry["size"] = f"sha256:{digest}", len(raw)

    tampered = _tampered(bundle, tmp_path / "t", alter)
    verified = await amirror("bundle", "verify", str(tampered))
    assert verified.returncode == 0, verified.stderr  # consistent: only the policy tells
    line = await _push_refused([tampered], f"{second_registry.host}/far3", policy)
    assert "signed by a key the policy does not trust" in line
    assert not holds_repository(second_registry, "far3/gap/altered")


async def test_bundle_create_by_a_config_takes_its_default_policy_and_no_job_policy(
    registry: Registry, tmp_path: Path, signer: PrivateKey
) -> None:
    name = "gap/config"
    digest = await pushed_image(registry, name, tmp_path, name, "one")
    await push_signed(
        registry.host, name, digest, [signed(signer, digest, f"{registry.host}/{name}:one")]
    )
    await pushed_image(registry, name, tmp_path, f"{name}-unsigned", "two")
    write_public(signer, tmp_path / "cosign.pub")
    policy_file(tmp_path / "policy.json", {"": keyed(tmp_path / "cosign.pub")})
    config = tmp_path / "bundle.toml"
    config.write_text(
        f'[defaults]\npolicy = "policy.json"\n[[jobs]]\nsource = "{registry.host}/{name}"\n'
        '[jobs.tags]\ninclude = ["^one$"]\n'
    )
    made = await amirror(
        "--json", "bundle", "create", str(tmp_path / "b.tar"), "--config", str(config)
    )
    assert made.returncode == 0, made.stderr
    (image,) = json.loads(made.stdout)["images"]
    assert image["admittedBy"]["by"].startswith("key SHA256:")
    config.write_text(config.read_text().replace('"^one$"', '"^two$"'))
    refused = await amirror("bundle", "create", str(tmp_path / "c.tar"), "--config", str(config))
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(": no signature")
    assert not (tmp_path / "c.tar").exists()
    config.write_text(
        config.read_text().replace("[jobs.tags]", 'policy = "policy.json"\n[jobs.tags]')
    )
    per_job = await amirror("bundle", "create", str(tmp_path / "d.tar"), "--config", str(config))
    assert per_job.returncode == 2
    assert "not per job" in per_job.stderr


async def test_the_parts_of_a_split_bundle_are_admitted_again_on_the_far_side(
    registry: Registry, second_registry: Registry, tmp_path: Path, signer: PrivateKey
) -> None:
    bundle, policy = await _bundle(registry, tmp_path, signer, "gap/parted")
    record = read_record(bundle)
    assert record is not None
    images = [f"{registry.host}/{i['name'].split('/', 1)[1]}" for i in record["images"]]
    out = tmp_path / "split.tar"
    made = await amirror(
        "bundle", "create", str(out), *images, "--policy", str(policy), "--max-part-size", "1MiB"
    )
    assert made.returncode == 0, made.stderr
    parts = sorted(tmp_path.glob("split.tar.part-*"), reverse=True)
    assert parts  # pushed through the parts' own path
    other = policy_file(
        tmp_path / "other.json",
        {"": keyed(write_public(make_key("p256"), tmp_path / "other.pub"))},
    )
    refused = await _push_refused(parts, f"{second_registry.host}/refused", other)
    assert "nothing pushed" in refused
    assert not holds_repository(second_registry, "refused/gap/parted")
    await _push_admitted(parts, f"{second_registry.host}/parted", policy)
