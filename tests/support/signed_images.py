"""Images made for signature tests: distinct small images pushed into a real registry, and
their repositories opened as endpoints to sign them there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import mirror
from fixtures.generate import LayoutWriter, image
from mirror.oci.reference import RegistryReference
from mirror.registry import RegistryClient, RegistryOptions, Repository
from tests.support.registry import Registry
from tests.support.signing import SignatureLayer, push_signatures
from tests.support.tools import amirror

OPTIONS = RegistryOptions(use_docker_config=False)


@asynccontextmanager
async def repository(host: str, name: str) -> AsyncIterator[Repository]:
    """A repository of a registry as an endpoint (to push signatures and read back)."""
    async with RegistryClient(OPTIONS) as client:
        yield client.repository(RegistryReference(host, name), writing=True)


async def pushed_image(
    registry: Registry, name: str, work: Path, seed: str, tag: str = "v1"
) -> str:
    """A new image (its one layer made of `seed`) pushed as `host/name:tag`; its digest."""
    writer = LayoutWriter(work / f"{name.replace('/', '_')}-{seed}")
    writer.name(image(writer, [{"seed": seed.encode()}]), "v")
    writer.close()
    result = await mirror.copy(f"oci:{writer.root}:v", f"docker://{registry.host}/{name}:{tag}")
    return result.digest


def holds_repository(registry: Registry, name: str) -> bool:
    """Whether anything was ever written into `name` of `registry` (blobs or manifests)."""
    return (registry.root / "storage/docker/registry/v2/repositories" / name).exists()


async def push_signed(host: str, name: str, digest: str, layers: Sequence[SignatureLayer]) -> None:
    """Push `layers` into `host/name` as cosign's signature image of `digest`."""
    async with repository(host, name) as repo:
        await push_signatures(repo, digest, layers)


async def copy_refused(policy: Path, source: str, target: str) -> str:
    """`mirror copy --policy POLICY SOURCE TARGET` as users run it, which must exit 1 saying
    one line; that line."""
    done = await amirror("copy", "--policy", str(policy), source, target)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]
