"""A sync with a signature policy: six images, three admitted and copied, three refused
(`refused` in text, JSON and /metrics), the run going on and exiting 1."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import mirror
from tests.integration.test_sync_service import Service, _value
from tests.support.registry import Registry, free_port
from tests.support.signed_images import pushed_image, repository
from tests.support.signing import (
    keyed,
    make_key,
    policy_file,
    push_signatures,
    signed,
    write_public,
)
from tests.support.tools import REPO, amirror

#: tag -> how it is signed
SIGNED_AS = {
    "good-p256": "trusted",
    "good-ed25519": "trusted second key",
    "two-one-good": "an untrusted signature, then a trusted one",
    "stranger": "an untrusted key",
    "other-digest": "a trusted key, naming another image",
    "unsigned": "nothing",
}
ADMITTED = {"good-p256", "good-ed25519", "two-one-good"}


async def _six_images(registry: Registry, name: str, tmp_path: Path) -> Path:
    """`name:TAG` for each of SIGNED_AS, signed so; the policy file trusting the two keys."""
    trusted, second, stranger = make_key("p256"), make_key("ed25519"), make_key("p384")
    digests = {t: await pushed_image(registry, name, tmp_path, t, t) for t in SIGNED_AS}
    identity = {tag: f"{registry.host}/{name}:{tag}" for tag in SIGNED_AS}
    layers = {
        "good-p256": [signed(trusted, digests["good-p256"], identity["good-p256"])],
        "good-ed25519": [signed(second, digests["good-ed25519"], identity["good-ed25519"])],
        "two-one-good": [
            signed(stranger, digests["two-one-good"], identity["two-one-good"]),
            signed(trusted, digests["two-one-good"], identity["two-one-good"]),
        ],
        "stranger": [signed(stranger, digests["stranger"], identity["stranger"])],
        "other-digest": [signed(trusted, digests["good-p256"], identity["other-digest"])],
    }
    async with repository(registry.host, name) as repo:
        for tag, signatures in layers.items():
            await push_signatures(repo, digests[tag], signatures)
    keys = (write_public(trusted, tmp_path / "a.pub"), write_public(second, tmp_path / "b.pub"))
    return policy_file(tmp_path / "policy.json", {f"{registry.host}/{name}": keyed(*keys)})


async def test_a_sync_copies_exactly_the_admitted_images_and_marks_the_others_refused(
    registry: Registry, tmp_path: Path
) -> None:
    source = "tsync/app"
    policy = await _six_images(registry, source, tmp_path)
    config = tmp_path / "sync.toml"
    config.write_text(
        f'[[jobs]]\nname = "signed"\nsource = "{registry.host}/{source}"\n'
        f'destination = "{registry.host}/mirror"\n'
    )
    done = await amirror("--plain-http", "--json", "sync", str(config), "--policy", str(policy))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    status = {i["source"].rsplit(":", 1)[1]: i["status"] for i in report["images"]}
    assert status == {t: "copied" if t in ADMITTED else "refused" for t in SIGNED_AS}
    assert report["summary"] == {"copied": 3, "refused": 3}
    by = {i["source"].rsplit(":", 1)[1]: i for i in report["images"]}
    assert by["good-p256"]["admittedBy"]["by"].startswith("key SHA256:")
    assert "signed by a key the policy does not trust" in by["stranger"]["error"]
    assert "payload names another digest" in by["other-digest"]["error"]
    assert by["unsigned"]["error"].endswith(": no signature")
    refused_lines = [line for line in done.stderr.splitlines() if "mirror: refused:" in line]
    assert len(refused_lines) == 3
    tags = await mirror.list_tags(f"docker://{registry.host}/mirror/{source}")
    images = {t for t in tags if not t.startswith("sha256-")}
    assert images == ADMITTED
    assert len([t for t in tags if t.endswith(".sig")]) == 3  # their signatures travelled

    config.write_text(config.read_text().replace('/mirror"', '/mirror-text"'))
    text = await amirror("--plain-http", "-v", "sync", str(config), "--policy", str(policy))
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert any(line.startswith("refused") and ":stranger" in line for line in lines)
    copied = [line for line in lines if line.startswith("copied")]
    assert len(copied) == 3
    assert all("admitted by key SHA256:" in line for line in copied)


async def test_the_service_counts_refused_images_in_its_metrics(
    registry: Registry, tmp_path: Path
) -> None:
    source = "tsvc/app"
    await _six_images(registry, source, tmp_path)
    config = tmp_path / "sync.toml"
    config.write_text(  # the policy named by the configuration, relative to its folder
        '[defaults]\npolicy = "policy.json"\n'
        f'[[jobs]]\nname = "signed"\nsource = "{registry.host}/{source}"\n'
        f'destination = "{registry.host}/svcmirror"\n'
    )
    metrics = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror", "--plain-http", "sync", str(config),
        "--every", "1s", "--metrics-addr", metrics, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    service = Service(process, metrics)
    try:
        first = await service.next_run()
        assert first["summary"] == {"copied": 3, "refused": 3}
        samples = await service.metrics()
        assert _value(samples, "mirror_sync_images_total", job="signed", status="refused") == 3
        assert _value(samples, "mirror_sync_images_total", job="signed", status="copied") == 3
        assert _value(samples, "mirror_sync_runs_total", result="partial") >= 1
        assert await service.terminate() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
