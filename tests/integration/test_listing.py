"""Tags and catalog follow Link pages on the real registry."""

from __future__ import annotations

import mirror
from mirror.oci.reference import parse_reference
from mirror.registry import RegistryClient
from tests.support.registry import Registry
from tests.support.tools import FIXTURES


async def test_tags_and_catalog_follow_pages(registry: Registry) -> None:
    source = f"oci:{FIXTURES / 'oci-single'}:v1"
    tags = [f"t{i}" for i in range(5)]
    for tag in tags:
        await mirror.copy(source, f"docker://{registry.host}/paged/app:{tag}")
        await mirror.copy(source, f"docker://{registry.host}/paged/repo-{tag}:v1")
    ref = parse_reference(f"docker://{registry.host}/paged/app")
    assert isinstance(ref, mirror.RegistryReference)
    async with RegistryClient() as client:
        paged = [t async for t in client.repository(ref).tags(page_size=2)]
        assert sorted(paged) == tags  # distribution does not sort across pages
        names = [n async for n in client.catalog(registry.host, page_size=2)]
    assert sorted(n for n in names if n.startswith("paged/repo-")) == [
        f"paged/repo-{t}" for t in tags
    ]
    assert len(names) == len(set(names))
    assert sorted(await mirror.list_tags(f"docker://{registry.host}/paged/app")) == tags
