"""`mirror copy SRC DST`, `mirror pull IMAGE DIR`, `mirror push DIR[:REF] IMAGE`."""

from __future__ import annotations

import contextlib

import click

from mirror.api import copy
from mirror.cli.context import registry_options
from mirror.cli.output import emit, json_option, options, run, wants_progress
from mirror.engine import CopyResult
from mirror.errors import InvalidReference
from mirror.reference import LayoutReference, Reference, RegistryReference, parse_reference

__all__ = ["copy_command", "pull_command", "push_command"]

_platform_option = click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    help="Copy only this platform of an index (repeat for several: a new index is written).",
)
_foreign_option = click.option(
    "--include-foreign", is_flag=True, help="Also copy non-distributable (foreign) layers."
)


def _do_copy(
    src: Reference, dst: Reference, platforms: tuple[str, ...], include_foreign: bool
) -> None:
    opts = options()
    progress = None
    if wants_progress(quiet=opts.quiet, as_json=opts.as_json):
        from mirror.progress import RichProgress  # rich is imported only for a terminal

        progress = RichProgress()
    with progress if progress is not None else contextlib.nullcontext():
        result = run(
            copy(
                src,
                dst,
                options=registry_options([src, dst]),
                platforms=platforms,
                include_foreign=include_foreign,
                progress=progress,
            )
        )
    emit(
        {"source": str(src), "destination": str(dst), **result.to_json()},
        _summary(src, dst, result),
    )


def _summary(src: Reference, dst: Reference, result: CopyResult) -> str:
    if result.up_to_date:
        return f"{dst} is up to date ({result.digest})"
    lines = [
        f"copied {src} to {dst}",
        f"digest {result.digest}",
        f"{result.blobs_copied} blobs copied ({result.bytes_copied} bytes), "
        f"{result.blobs_mounted} mounted, {result.blobs_skipped} already there, "
        f"in {result.seconds:.2f} s",
    ]
    if result.digest_changed:
        lines.append(
            f"note: the platform selection changed the digest (source {result.source_digest})"
        )
    return "\n".join(lines)


def _parse(text: str, what: str) -> Reference:
    try:
        return parse_reference(text)
    except InvalidReference as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@_platform_option
@_foreign_option
@json_option
def copy_command(
    source: str, destination: str, platforms: tuple[str, ...], include_foreign: bool, as_json: bool
) -> None:
    """Copy an image: SOURCE and DESTINATION are docker://HOST/REPO[:TAG] or oci:DIR[:REF]."""
    _do_copy(
        _parse(source, "SOURCE"), _parse(destination, "DESTINATION"), platforms, include_foreign
    )


@click.command("pull")
@click.argument("image")
@click.argument("directory", type=click.Path(file_okay=False))
@_platform_option
@_foreign_option
@json_option
def pull_command(
    image: str, directory: str, platforms: tuple[str, ...], include_foreign: bool, as_json: bool
) -> None:
    """Pull IMAGE (HOST/REPO[:TAG]) into the OCI layout DIRECTORY, named by its tag."""
    src = _parse(image if "://" in image else f"docker://{image}", "IMAGE")
    if not isinstance(src, RegistryReference):
        raise click.BadParameter("IMAGE must be a registry image", param_hint="IMAGE")
    name = src.tag or (None if src.digest else "latest")
    _do_copy(src, LayoutReference(directory, name), platforms, include_foreign)


@click.command("push")
@click.argument("layout")
@click.argument("image")
@_platform_option
@_foreign_option
@json_option
def push_command(
    layout: str, image: str, platforms: tuple[str, ...], include_foreign: bool, as_json: bool
) -> None:
    """Push an image of the OCI layout LAYOUT (DIR[:REF]) to IMAGE (HOST/REPO[:TAG])."""
    src = _parse(layout if layout.startswith("oci:") else f"oci:{layout}", "LAYOUT")
    dst = _parse(image if "://" in image else f"docker://{image}", "IMAGE")
    if not isinstance(dst, RegistryReference):
        raise click.BadParameter("IMAGE must be a registry image", param_hint="IMAGE")
    _do_copy(src, dst, platforms, include_foreign)
