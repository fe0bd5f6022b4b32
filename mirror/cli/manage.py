"""`mirror manifests|props|delete|prune`, and `mirror tags --properties`: registry management.

`mirror.manage` is imported when a command runs: help and usage errors load no HTTP stack."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mirror.cli.context import registry_options
from mirror.cli.output import emit, emit_outcome, emit_report, json_option, run
from mirror.errors import InvalidReference
from mirror.oci.digest import Digest
from mirror.oci.reference import (
    LayoutReference,
    RegistryReference,
    parse_reference,
    parse_registry_reference,
)

if TYPE_CHECKING:
    from mirror.manage import ContainerRegistryClient, ManifestProperties

__all__ = ["delete_command", "manifests_command", "props_command", "prune_command", "tag_table"]

T = TypeVar("T")


def _ref(text: str) -> RegistryReference:
    """A registry reference; a bad one is a failure (exit 1) naming the bad part."""
    return parse_registry_reference(text.removeprefix("docker://"), original=text)


def _with_client(
    ref: RegistryReference, work: Callable[[ContainerRegistryClient], Awaitable[T]]
) -> T:
    from mirror.manage import ContainerRegistryClient

    async def go() -> T:
        options = registry_options([ref])
        async with ContainerRegistryClient(ref.registry, options=options) as client:
            return await work(client)

    return run(go())


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def tag_table(registry_repo: str) -> tuple[list[dict[str, Any]], str]:
    """Rows and text of `mirror tags --properties`."""
    from mirror.manage import ManifestOrder

    ref = _ref(registry_repo)

    async def work(client: ContainerRegistryClient) -> list[Any]:
        repo = client.get_repository(ref.repository)
        backend = await client.backend()
        return await backend.tags(repo.name, None, ManifestOrder.NEWEST)

    tags = _with_client(ref, work)
    rows = [t.to_json() for t in tags]
    text = "\n".join(f"{t.name:<24} {t.digest}  {_when(t.last_updated_on)}" for t in tags)
    return rows, text


def _manifest_line(m: ManifestProperties) -> str:
    tags = ",".join(m.tags) or "<untagged>"
    return f"{m.digest}  {_when(m.last_updated_on):<25} {m.size or 0:>10}  {tags}"


@click.command("manifests")
@click.argument("repository")
@click.option(
    "--order", type=click.Choice(["newest", "oldest"]), default="newest", show_default=True
)
@json_option
def manifests_command(repository: str, order: str, as_json: bool) -> None:
    """List the manifests of REPOSITORY (HOST/REPO) with size, time and tags."""
    from mirror.manage import ManifestOrder

    ref = _ref(repository)

    async def work(client: ContainerRegistryClient) -> list[ManifestProperties]:
        repo = client.get_repository(ref.repository)
        return [m async for m in repo.list_manifest_properties(order_by=ManifestOrder(order))]

    manifests = _with_client(ref, work)
    emit([m.to_json() for m in manifests], lambda: "\n".join(map(_manifest_line, manifests)))


def _flag(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(f"--{name}", type=click.BOOL, default=None, help=f"Set {name} (ACR).")


@click.command("props")
@click.argument("reference")
@_flag("can-write")
@_flag("can-delete")
@_flag("can-list")
@_flag("can-read")
@json_option
def props_command(
    reference: str,
    can_write: bool | None,
    can_delete: bool | None,
    can_list: bool | None,
    can_read: bool | None,
    as_json: bool,
) -> None:
    """Show (or, with --can-* flags, set) properties of a repository, tag or manifest."""
    from mirror.manage import ArtifactAttributes

    ref = _ref(reference)
    attributes = ArtifactAttributes(can_delete, can_write, can_list, can_read)

    async def work(client: ContainerRegistryClient) -> dict[str, Any]:
        repo = client.get_repository(ref.repository)
        setting = dict(
            can_delete=can_delete, can_write=can_write, can_list=can_list, can_read=can_read
        )
        if ref.digest:
            artifact = repo.get_artifact(str(ref.digest))
            if attributes.empty:
                return (await artifact.get_manifest_properties()).to_json()
            return (await artifact.update_manifest_properties(**setting)).to_json()
        if ref.tag:
            artifact = repo.get_artifact(ref.tag)
            if attributes.empty:
                return (await artifact.get_tag_properties(ref.tag)).to_json()
            return (await artifact.update_tag_properties(ref.tag, **setting)).to_json()
        if attributes.empty:
            return (await repo.get_properties()).to_json()
        return (await repo.update_properties(**setting)).to_json()

    props = _with_client(ref, work)
    emit(props, lambda: "\n".join(f"{k:<14} {_shown(v)}" for k, v in props.items()))


def _shown(value: object) -> str:
    """A property value for people: no Python `None`/`True`, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    return str(value)


@click.command("delete")
@click.argument("reference")
@json_option
def delete_command(reference: str, as_json: bool) -> None:
    """Delete a tag (HOST/REPO:TAG) or a manifest with its tags (HOST/REPO@DIGEST); in a
    layout, a name (oci:DIR:REF) or an image with all its names (oci:DIR@DIGEST)."""
    if reference.startswith(("oci-archive:", "docker-archive:")):
        raise InvalidReference(
            f"{reference}: an archive is not edited in place; delete in a registry or a "
            "layout (oci:DIR:REF)"
        )
    if reference.startswith("oci:"):
        done, names = run(_delete_in_layout(reference))
        emit_report({"reference": reference, "result": done, "names": list(names)}, done)
        return
    ref = _ref(reference)
    if not ref.tag and not ref.digest:
        raise InvalidReference(f"{reference}: name a tag or a digest to delete")

    async def work(client: ContainerRegistryClient) -> str:
        repo = client.get_repository(ref.repository)
        if ref.digest:
            await repo.get_artifact(str(ref.digest)).delete()
            return f"deleted manifest {ref.digest}"
        assert ref.tag is not None
        await repo.get_artifact(ref.tag).delete_tag(ref.tag)
        return f"deleted tag {ref.tag}"

    done = _with_client(ref, work)
    emit_report({"reference": reference, "result": done}, done)


def _layout_target(reference: str) -> tuple[str, str]:
    """The layout directory and the name or digest `oci:DIR:REF` or `oci:DIR@DIGEST` names."""
    path, at, digest = reference.removeprefix("oci:").rpartition("@")
    if at and digest.startswith(("sha256:", "sha512:")):
        return path, str(Digest(digest))
    ref = parse_reference(reference)
    assert isinstance(ref, LayoutReference)
    if ref.ref is None:
        raise InvalidReference(f"{reference}: name a tag or a digest to delete")
    return ref.path, ref.ref


async def _delete_in_layout(reference: str) -> tuple[str, tuple[str, ...]]:
    """Take a name off a layout, or a manifest out of it; what was done, and the names that
    left (fallback and digest tags go with their subject)."""
    from mirror.layout import Layout

    path, target = _layout_target(reference)
    async with await Layout.open(path) as layout:
        if target.startswith(("sha256:", "sha512:")):
            names = await layout.remove_manifest(Digest(target))
            listed = f" ({', '.join(sorted(names))})" if names else ""
            return f"deleted manifest {target}{listed}", names
        names = await layout.remove_image(target)
    attached = f" and what was attached to it ({', '.join(names[1:])})" if names[1:] else ""
    return f"deleted tag {target}{attached}", names


@click.command("prune")
@click.argument("repository")
@click.option("--keep", type=click.IntRange(0), required=True, help="Newest manifests to keep.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@json_option
def prune_command(repository: str, keep: int, dry_run: bool, as_json: bool) -> None:
    """Keep the newest N manifests of REPOSITORY; delete the others with their tags."""
    ref = _ref(repository)

    async def work(client: ContainerRegistryClient) -> list[ManifestProperties]:
        return await client.get_repository(ref.repository).prune(keep, dry_run=dry_run)

    doomed = _with_client(ref, work)
    verb = "would delete" if dry_run else "deleted"
    emit_outcome(
        {"dryRun": dry_run, "deleted": [m.to_json() for m in doomed]},
        lambda: (
            "\n".join(f"{verb} {_manifest_line(m)}" for m in doomed)
            or f"nothing to delete: {keep} or fewer manifests"
        ),
        dry_run=dry_run,
    )
