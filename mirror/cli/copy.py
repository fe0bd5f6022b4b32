"""`mirror copy SRC DST`, `mirror pull IMAGE DIR`, `mirror push DIR[:REF] IMAGE`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from mirror.cli.context import registry_options
from mirror.cli.endpoints import parse_endpoint
from mirror.cli.output import (
    counted,
    emit_report,
    json_option,
    parse_platforms,
    progress_display,
    run,
)
from mirror.cli.policy import policy_option
from mirror.errors import InvalidReference
from mirror.oci.platform import Platform
from mirror.oci.reference import (
    DockerArchiveReference,
    LayoutReference,
    Reference,
    RegistryReference,
    check_destination,
)

if TYPE_CHECKING:
    from mirror.engine import CopyResult
    from mirror.trust.policy import Policy

__all__ = ["copy_command", "pull_command", "push_command"]

_platform_option = click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    callback=parse_platforms,
    help="Copy only this platform of an index (repeat for several: a new index is written); "
    "an image of another platform is an error.",
)
_foreign_option = click.option(
    "--include-foreign", is_flag=True, help="Also copy non-distributable (foreign) layers."
)
_referrers_option = click.option(
    "--referrers",
    is_flag=True,
    help="Also copy what refers to the image (signatures, SBOMs, attestations), to any depth.",
)
_digest_tags_option = click.option(
    "--digest-tags/--no-digest-tags",
    default=True,
    show_default=True,
    help="With --referrers: also copy cosign's sha256-<hex>.sig/.att/.sbom tags.",
)


@dataclasses.dataclass(frozen=True)
class _Flags:
    """What every copy command's options choose."""

    platforms: tuple[Platform, ...]
    include_foreign: bool
    referrers: bool
    digest_tags: bool
    policy: Policy | None = None


def _copy_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of copy, pull and push, gathered into `flags: _Flags`."""

    @functools.wraps(command)
    def wrapper(
        *args: object,
        platforms: tuple[Platform, ...],
        include_foreign: bool,
        referrers: bool,
        digest_tags: bool,
        policy: Policy | None,
        **kwargs: object,
    ) -> None:
        flags = _Flags(platforms, include_foreign, referrers, digest_tags, policy)
        command(*args, flags=flags, **kwargs)

    for option in (
        policy_option,
        _digest_tags_option,
        _referrers_option,
        _foreign_option,
        _platform_option,
    ):
        wrapper = option(wrapper)
    return wrapper


#: what a copy out of a docker archive says of its digest
_NEW_MANIFEST = "a docker archive keeps no manifest: this copy wrote a new one"


def _do_copy(
    src: Reference,
    dst: Reference,
    flags: _Flags,
    manifest_format: str = "v2s2",
    compression: str = "gzip",
) -> None:
    from mirror.api import copy  # once the arguments are understood: help loads no HTTP stack

    with progress_display() as progress:
        result = run(
            copy(
                src,
                dst,
                options=registry_options([src, dst]),
                platforms=flags.platforms,
                include_foreign=flags.include_foreign,
                referrers=flags.referrers,
                digest_tags=flags.digest_tags,
                progress=progress,
                policy=flags.policy,
                manifest_format=manifest_format,
                compression=compression,
            )
        )
    report = {"source": str(src), "destination": str(dst), **result.to_json()}
    summary = _summary(src, dst, result)
    if isinstance(src, DockerArchiveReference):
        report["note"] = f"{_NEW_MANIFEST} ({result.digest})"
        summary += f"\nnote: {_NEW_MANIFEST}"
    emit_report(report, summary)


def _summary(src: Reference, dst: Reference, result: CopyResult) -> str:
    admitted = [f"admitted by {result.admitted.describe()}"] if result.admitted else []
    if result.up_to_date:
        return "\n".join([f"{dst} is up to date ({result.digest})", *admitted])
    lines = [
        f"copied {src} to {dst}",
        f"digest {result.digest}",
        f"{counted(result.blobs_copied, 'blob')} copied ({counted(result.bytes_copied, 'byte')}), "
        f"{result.blobs_mounted} mounted, {result.blobs_skipped} already there, "
        f"in {result.seconds:.2f} s",
        *admitted,
    ]
    if result.digest_changed:
        lines.append(
            f"note: the platform selection changed the digest (source {result.source_digest})"
        )
    return "\n".join(lines)


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@_copy_options
@click.option(
    "--format",
    "manifest_format",
    type=click.Choice(["v2s2", "oci"]),
    default="v2s2",
    show_default=True,
    help="From a docker archive: the manifest written (Docker v2 schema 2, or OCI).",
)
@click.option(
    "--dest-compress-format",
    "compression",
    type=click.Choice(["gzip", "zstd"]),
    default="gzip",
    show_default=True,
    help="From a docker archive: how layers are compressed (zstd means an OCI manifest).",
)
@json_option
def copy_command(
    source: str,
    destination: str,
    flags: _Flags,
    manifest_format: str,
    compression: str,
    as_json: bool,
) -> None:
    """Copy an image from SOURCE to DESTINATION.

    \b
    Each is one of:
      docker://HOST[:PORT]/REPO[:TAG][@DIGEST]   an image in a registry
      oci:DIR[:REF]                              an OCI image layout directory
      oci-archive:FILE[:REF]                     the same as a .tar or .tar.zst file
      docker-archive:FILE[:NAME:TAG|:@N]         a `docker save` tar (docker load reads it)
    REF is an image name in the layout, or a digest (sha256:…); @N, the N-th image of a
    docker archive, is for reading only. As a layout does, an existing oci-archive keeps its
    images: the image is added (an image REF named before leaves the file), and one the
    archive holds under REF already is up to date (the file is left as it was).
    """
    src, dst = parse_endpoint(source, "SOURCE"), parse_endpoint(destination, "DESTINATION")
    try:
        check_destination(dst)
    except InvalidReference as exc:
        raise click.BadParameter(str(exc), param_hint="DESTINATION") from None
    _do_copy(src, dst, flags, manifest_format, compression)


@click.command("pull")
@click.argument("image")
@click.argument("directory", type=click.Path(file_okay=False))
@_copy_options
@json_option
def pull_command(image: str, directory: str, flags: _Flags, as_json: bool) -> None:
    """Pull IMAGE (HOST/REPO[:TAG][@DIGEST]) into the OCI layout DIRECTORY (also written
    oci:DIR[:NAME] or oci-archive:FILE[:NAME]), named by its tag unless NAME is given."""
    src = parse_endpoint(image, "IMAGE", registry=True, hints=False)
    if not isinstance(src, RegistryReference):
        raise click.BadParameter("IMAGE must be a registry image", param_hint="IMAGE")
    name = src.tag or (None if src.digest else "latest")
    dst: Reference = LayoutReference(directory, name)
    if directory.startswith(("oci:", "oci-archive:")):
        dst = parse_endpoint(directory, "DIRECTORY")
        assert isinstance(dst, LayoutReference)
        dst = dataclasses.replace(dst, ref=dst.ref or name)
    _do_copy(src, dst, flags)


@click.command("push")
@click.argument("layout")
@click.argument("image")
@_copy_options
@json_option
def push_command(layout: str, image: str, flags: _Flags, as_json: bool) -> None:
    """Push an image of LAYOUT (DIR[:REF], oci:DIR[:REF] or oci-archive:FILE[:REF]) to IMAGE
    (HOST/REPO[:TAG][@DIGEST])."""
    known = layout.startswith(("oci:", "oci-archive:"))
    src = parse_endpoint(layout if known else f"oci:{layout}", "LAYOUT")
    dst = parse_endpoint(image, "IMAGE", registry=True, hints=False)
    if not isinstance(dst, RegistryReference):
        raise click.BadParameter("IMAGE must be a registry image", param_hint="IMAGE")
    _do_copy(src, dst, flags)
