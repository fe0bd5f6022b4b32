"""`mirror inspect REF`, `mirror tags REPO`, `mirror ls REGISTRY`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from mirror.cli.context import registry_options
from mirror.cli.endpoints import parse_endpoint
from mirror.cli.output import counted, emit, json_option, options, run, say
from mirror.oci.reference import RegistryReference, is_valid_tag

if TYPE_CHECKING:
    from mirror.api import ImageInfo

__all__ = ["inspect_command", "ls_command", "tags_command"]


@click.command("inspect")
@click.argument("reference")
@click.option("--raw", is_flag=True, help="Print the manifest's exact bytes.")
@json_option
def inspect_command(reference: str, raw: bool, as_json: bool) -> None:
    """Show digest, media type, platforms, layers and sizes of REFERENCE."""
    from mirror.api import inspect  # once the arguments are understood (as in each command)

    ref = parse_endpoint(reference, "REFERENCE", registry=True)
    info = run(inspect(ref, options=registry_options([ref])))
    if raw:
        sys.stdout.buffer.write(info.raw)
        sys.stdout.buffer.flush()
        return
    emit(info.to_json(), lambda: _text(info))


def _text(info: ImageInfo) -> str:
    lines = [
        f"Reference:  {info.reference}",
        f"Digest:     {info.digest}",
        f"MediaType:  {info.media_type}",
    ]
    if info.artifact_type:
        lines.append(f"Artifact:   {info.artifact_type}")
    for p in info.platforms:
        lines.append(f"Platform:   {p['platform'] or '-':<20} {p['digest']}")
    if info.config:
        c = info.config
        where = "/".join(x for x in (c.get("os"), c.get("architecture"), c.get("variant")) if x)
        lines.append(f"Config:     {c['digest']} {where} {c.get('created', '')}".rstrip())
    for layer in info.layers:
        lines.append(f"Layer:      {layer['digest']} {layer['size']:>10}  {layer['mediaType']}")
    if info.layers:
        lines.append(f"Size:       {sum(x['size'] for x in info.layers)} bytes in layers")
    return "\n".join(lines)


@click.command("tags")
@click.argument("repository")
@click.option("--properties", is_flag=True, help="Digest and time of each tag, newest first.")
@json_option
def tags_command(repository: str, properties: bool, as_json: bool) -> None:
    """List the tags of REPOSITORY (HOST/REPO, or oci:DIR for image names)."""
    if properties:
        from mirror.cli.manage import tag_table

        rows, text = tag_table(repository)
        emit(rows, text)
        return
    from mirror.api import list_tags

    ref = parse_endpoint(repository, "REPOSITORY", registry=True)
    tags = run(list_tags(ref, options=registry_options([ref])))
    if options().as_json:  # exact, as the registry sent them
        emit(tags, "")
        return
    usable = (
        tags if not isinstance(ref, RegistryReference) else [t for t in tags if is_valid_tag(t)]
    )
    if len(usable) < len(tags):
        left_out = counted(len(tags) - len(usable), "tag")
        say(f"mirror: {left_out} of {ref} not listed: not of the tag grammar")
    emit(tags, "\n".join(usable))


@click.command("ls")
@click.argument("registry")
@json_option
def ls_command(registry: str, as_json: bool) -> None:
    """List the repositories of REGISTRY (HOST[:PORT])."""
    from mirror.api import list_repositories

    host = registry.removeprefix("docker://").rstrip("/")
    names = run(list_repositories(host, options=registry_options([host])))
    emit(names, "\n".join(names))
