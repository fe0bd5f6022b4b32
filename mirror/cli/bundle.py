"""`mirror bundle create|ls|verify|push`: many images in one file for air-gapped transfer.

Each command imports the bundle machinery when it runs: help and usage errors load no HTTP
stack."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mirror.cli.context import registry_options
from mirror.cli.layout import report_problems
from mirror.cli.output import (
    counted,
    emit,
    emit_report,
    json_option,
    options,
    parse_media_size,
    parse_platforms,
    progress_display,
    run,
)
from mirror.cli.policy import policy_option
from mirror.errors import InvalidReference, LayoutError
from mirror.oci.platform import Platform
from mirror.oci.reference import is_valid_repository, parse_registry_reference

if TYPE_CHECKING:
    from mirror.registry import RegistryOptions
    from mirror.trust.policy import Policy

__all__ = ["bundle_group"]


@click.group("bundle")
def bundle_group() -> None:
    """Carry images across an air gap in one verifiable file (.tar or .tar.zst)."""


@bundle_group.command("create")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Choose images with a sync config's jobs and tag filters (destinations ignored).",
)
@click.option(
    "--since",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A previous bundle: leave out the blobs it carried (a delta bundle).",
)
@click.option(
    "--recompress", type=click.Choice(["zstd"]), help="Recompress gzip layers (digests change)."
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    callback=parse_platforms,
    help="Take only this platform of each image (repeatable); an image of another platform "
    "is an error.",
)
@click.option(
    "--referrers",
    is_flag=True,
    help="Also carry what refers to each image (signatures, SBOMs, attestations); "
    "bundle push pushes them too.",
)
@click.option(
    "--digest-tags/--no-digest-tags",
    default=True,
    show_default=True,
    help="With --referrers: also carry cosign's sha256-<hex>.sig/.att/.sbom tags.",
)
@click.option(
    "--format",
    "bundle_format",
    type=click.Choice(["oci", "docker-archive"]),
    default="oci",
    show_default=True,
    help="oci: a bundle (an oci-archive with a record); docker-archive: the tar `docker load` "
    "reads, one platform per image.",
)
@policy_option
@click.option(
    "--max-part-size",
    metavar="SIZE",
    callback=parse_media_size,
    help="Write OUT.part-0001, OUT.part-0002, … each at most SIZE (4.7GB = 4.7*10^9 bytes, "
    "4GiB, 64MiB), each a bundle that verifies alone.",
)
@json_option
def create_command(
    out: Path,
    images: tuple[str, ...],
    config_path: Path | None,
    since: Path | None,
    recompress: str | None,
    platforms: tuple[Platform, ...],
    referrers: bool,
    digest_tags: bool,
    bundle_format: str,
    policy: Policy | None,
    max_part_size: int | None,
    as_json: bool,
) -> None:
    """Write IMAGES (HOST/REPO:TAG …), or those --config selects, into the bundle file OUT.
    With --policy (or the config's default policy), only admitted images, with their
    signatures and what admitted them recorded."""
    if bundle_format == "docker-archive" and (
        since or recompress or referrers or policy or max_part_size
    ):
        raise click.UsageError(
            "--format docker-archive takes no --since, --recompress, --referrers, --policy or "
            "--max-part-size: docker load reads one whole file of whole images without "
            "referrers or signatures"
        )
    if bool(images) == bool(config_path):
        raise click.UsageError("give IMAGES or --config, one of them")
    from mirror.archive.bundle import create_bundle
    from mirror.sync.config import load_config
    from mirror.sync.run import options_for, selected_images

    options = None
    if config_path is not None:
        config = load_config(config_path, need_destination=False)
        if any(job.policy is not None for job in config.jobs):
            raise click.UsageError(
                "bundle create admits by one policy: give it as --policy or the config's "
                "[defaults] policy, not per job"
            )
        policy = policy or config.policy
        options = options_for(config, registry_options(config.hosts()))
        images = tuple(run(selected_images(config, options)))
    refs = [parse_registry_reference(i.removeprefix("docker://"), original=i) for i in images]
    if bundle_format == "docker-archive":
        _docker_archive(out, images, options or registry_options(refs), platforms)
        return
    with progress_display() as progress:
        record, _ = run(
            create_bundle(
                out,
                images,
                options=options or registry_options(refs),
                since=since,
                recompress=recompress,
                platforms=platforms,
                referrers=referrers,
                digest_tags=digest_tags,
                progress=progress,
                policy=policy,
                max_part_size=max_part_size,
            )
        )
    files = record.part_files or [out]
    size = sum(f.stat().st_size for f in files)
    carried = sum(s for d, s in record.blobs.items() if d not in set(record.omitted))
    lines = [f"{out}: {counted(len(record.images), 'image')}, {counted(size, 'byte')}"]
    lines += [
        f"  {i.name}  {i.digest}"
        + (
            f"  admitted by {i.admitted['by']} (policy scope {i.admitted['scope']})"
            if i.admitted
            else ""
        )
        for i in record.images
    ]
    if record.part_files:
        lines.append(f"  in {counted(len(files), 'part')}:")
        lines += [f"  {f}  {counted(f.stat().st_size, 'byte')}" for f in files]
    if record.omitted:
        left_out = counted(len(record.omitted), "blob")
        lines.append(f"  delta: {left_out} left out (carried by {record.since})")
    for change in record.recompressed:
        lines.append(f"  recompressed {change['from']} -> {change['to']}")
    emit_report(
        {
            "file": str(out),
            "bytes": size,
            "blobBytes": carried,
            **record.to_json(),
            **({"parts": [str(f) for f in files]} if record.part_files else {}),
        },
        "\n".join(lines),
    )


def _docker_archive(
    out: Path, images: tuple[str, ...], options: RegistryOptions, platforms: tuple[Platform, ...]
) -> None:
    """`bundle create --format docker-archive`: the images in one `docker load` tar."""
    from mirror.archive.bundle import create_docker_archive

    with progress_display() as progress:
        done = run(
            create_docker_archive(
                out, images, options=options, platforms=platforms, progress=progress
            )
        )
    size = out.stat().st_size
    lines = [f"{out}: {counted(len(done), 'image')} for docker load, {counted(size, 'byte')}"]
    lines += [f"  {tag}  {result.digest}" for tag, result in done]
    emit_report(
        {
            "file": str(out),
            "bytes": size,
            "format": "docker-archive",
            "images": [{"name": tag, "digest": result.digest} for tag, result in done],
        },
        "\n".join(lines),
    )


@bundle_group.command("ls")
@click.argument(
    "bundles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
def ls_command(bundles: tuple[Path, ...], as_json: bool) -> None:
    """List the images a bundle (or the parts of a split bundle, any of them) records."""
    from mirror.archive.bundle import list_bundle
    from mirror.archive.bundle_parts import is_part

    if len(bundles) == 1 and not is_part(bundles[0]):
        record = run(list_bundle(bundles[0]))
        emit(
            record.to_json(),
            lambda: "\n".join(f"{i.name}  {i.digest}  {i.media_type}" for i in record.images),
        )
        return
    from mirror.archive.bundle_parts import check_parts

    checked = run(check_parts(bundles, whole_set=False, verify=False))
    emit(
        checked.infos[0].contents,
        lambda: "\n".join(
            f"{i.image.name}  {i.image.digest}  {i.image.media_type}  {i.where()}"
            for i in checked.images
        ),
    )


@bundle_group.command("verify")
@click.argument(
    "bundles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
def verify_command(bundles: tuple[Path, ...], as_json: bool) -> None:
    """Re-hash every blob of BUNDLE and check every reference; exit 1 on problems.

    Parts of a split bundle are given in any order: each is verified alone and said what it
    holds; with several parts given, a missing part is a problem too."""
    from mirror.archive.bundle import verify_bundle
    from mirror.archive.bundle_parts import check_parts, is_part

    if len(bundles) == 1 and not is_part(bundles[0]):
        with progress_display() as progress:
            problems = run(verify_bundle(bundles[0], progress=progress))
        report_problems(problems, str(bundles[0]))
        return
    with progress_display() as progress:
        checked = run(check_parts(bundles, whole_set=len(bundles) > 1, progress=progress))
    if options().as_json:
        rows = [
            {"kind": str(p.kind), "subject": p.subject, "message": p.message}
            for p in checked.problems
        ]
        emit({"ok": not checked.problems, "problems": rows, "parts": checked.to_json()}, "")
        if checked.problems:
            sys.exit(1)
        return
    good = [i for i in checked.infos if i.number not in checked.damaged]
    emit_report(None, "\n".join(checked.holds(i) for i in good))
    report_problems(checked.problems, checked.name)


def _registry_prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback: `REGISTRY[/PREFIX]`, checked before the bundle is read."""
    host, _, prefix = value.removeprefix("docker://").strip("/").partition("/")
    local = value.startswith(("oci:", "oci-archive:", "docker-archive:", ".", "/", "~"))
    try:
        parse_registry_reference(f"{host}/x")
    except InvalidReference:
        local = True
    if local or (prefix and not is_valid_repository(prefix)):
        raise click.BadParameter(
            f"{value!r} is not REGISTRY[/PREFIX] (bundle push writes to a registry; "
            "'mirror copy oci-archive:BUNDLE:NAME DESTINATION' copies one image elsewhere)",
            ctx,
            param,
        )
    return value


@bundle_group.command("push")
@click.argument(
    "bundles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument("destination", callback=_registry_prefix)
@policy_option
@json_option
def push_command(
    bundles: tuple[Path, ...], destination: str, policy: Policy | None, as_json: bool
) -> None:
    """Push every image of BUNDLE to DESTINATION (REGISTRY[/PREFIX]); with --policy, only
    when every image passes it again, offline, from the signatures the bundle carries.

    Parts of a split bundle are given in any order: every image the parts given hold complete
    is pushed; a missing or damaged part is named, with the images not pushed (exit 1)."""
    from mirror.archive.bundle import push_bundle
    from mirror.archive.bundle_parts import is_part, push_parts

    host = destination.removeprefix("docker://").split("/", 1)[0]
    options = registry_options([host])
    failure = None
    with progress_display() as progress:
        if len(bundles) == 1 and not is_part(bundles[0]):
            pushed = run(
                push_bundle(
                    bundles[0], destination, options=options, progress=progress, policy=policy
                )
            )
        else:
            done = run(
                push_parts(bundles, destination, options=options, progress=progress, policy=policy)
            )
            pushed, failure = done.pushed, done.failure()
    emit_report(
        [{"name": p.name, "target": p.target, **p.result.to_json()} for p in pushed],
        lambda: "\n".join(
            f"{p.name} -> {p.target}  {p.result.digest}"
            + (f"  admitted by {p.result.admitted.describe()}" if p.result.admitted else "")
            for p in pushed
        ),
    )
    if failure is not None:
        raise LayoutError(failure)
