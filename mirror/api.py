"""The library's operations as async functions taking reference strings: copy, inspect, list."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.errors import InvalidReference
from mirror.imageconfig import read_config
from mirror.oci.model import Index, Manifest, ManifestLike
from mirror.oci.platform import Platform
from mirror.oci.reference import (
    ArchiveReference,
    DockerArchiveReference,
    Reference,
    RegistryReference,
    check_destination,
    parse_reference,
    repo_tag,
)
from mirror.registry import RegistryClient, RegistryOptions

# Each other endpoint, and the copy engine, is imported where it is used: a command that
# reads one manifest from a registry loads neither layouts nor archives (start-up).
if TYPE_CHECKING:
    from mirror.archive.docker_import import ImportFormat
    from mirror.endpoint import ImageDestination, ImageSource
    from mirror.engine import CopyResult
    from mirror.events import ProgressSink
    from mirror.trust.policy import Policy

__all__ = [
    "ImageInfo",
    "copy",
    "inspect",
    "list_repositories",
    "list_tags",
    "open_destination",
    "open_source",
]


def _parse(ref: str | Reference) -> Reference:
    return parse_reference(ref) if isinstance(ref, str) else ref


@contextlib.asynccontextmanager
async def open_source(
    ref: Reference, client: RegistryClient, *, imported: ImportFormat | None = None
) -> AsyncIterator[tuple[ImageSource, str | None]]:
    """The source a reference names, and the tag/name/digest within it to read: a registry
    repository, a layout, a plain tar read in place, a zstd one unpacked, or a docker
    archive's image made a registry image (`imported`: its manifest and compression)."""
    if isinstance(ref, RegistryReference):
        yield client.repository(ref), ref.reference
        return
    if isinstance(ref, DockerArchiveReference):
        from mirror.archive.docker_import import IMPORTED_NAME, ImportFormat, imported_image

        how = imported or ImportFormat()
        largest = client.options.limits.max_blob_size
        async with imported_image(Path(ref.path), ref.image, how, max_layer_size=largest) as made:
            yield made, IMPORTED_NAME
        return
    if isinstance(ref, ArchiveReference):
        from mirror.archive.reader import ArchiveReader
        from mirror.archive.tarfiles import is_zstd
        from mirror.archive.unpack import unpacked

        path = Path(ref.path)
        if not await asyncio.to_thread(is_zstd, path):
            yield await ArchiveReader.open(path), ref.ref
            return
        async with unpacked(path) as unpacked_layout:
            yield unpacked_layout, ref.ref
        return
    from mirror.layout import Layout

    async with await Layout.open(ref.path, retry=client.options.retry) as layout:
        yield layout, ref.ref


@contextlib.asynccontextmanager
async def open_destination(
    ref: Reference, client: RegistryClient
) -> AsyncIterator[tuple[ImageDestination, str | None]]:
    """The destination a reference names, and the tag/name within it to write: a registry
    repository, a layout (made at its first write), or an archive written straight into its
    file (staged, renamed into place when the copy succeeds, removed when it fails).
    InvalidReference for a name that only picks an image when reading (`docker-archive:F:@N`)."""
    check_destination(ref)
    if isinstance(ref, RegistryReference):
        yield client.repository(ref, writing=True), ref.tag or (None if ref.digest else "latest")
        return
    from mirror.archive.writeonly import written

    retry = client.options.retry
    if isinstance(ref, DockerArchiveReference):
        from mirror.archive.docker_export import DockerArchiveWriter

        async with written(DockerArchiveWriter(Path(ref.path), retry)) as docker_writer:
            yield docker_writer, ref.image
        return
    if isinstance(ref, ArchiveReference):
        from mirror.archive.writer import ArchiveWriter

        async with written(ArchiveWriter(Path(ref.path), retry)) as writer:
            yield writer, ref.ref
        return
    from mirror.layout import Layout

    async with await Layout.open(ref.path, create=True, retry=retry) as layout:
        yield layout, ref.ref


def _identity(ref: Reference) -> RegistryReference | None:
    """The reference a signature policy judges a registry image by: as written, a tag and a
    digest both kept, `latest` when it names neither (as containers/image does)."""
    if not isinstance(ref, RegistryReference):
        return None
    return ref if ref.tag or ref.digest else ref.with_reference(tag="latest")


def _import_format(manifest_format: str, compression: str) -> ImportFormat:
    from mirror.archive.docker_import import ImportFormat

    if manifest_format not in ("v2s2", "oci") or compression not in ("gzip", "zstd"):
        raise ValueError(
            f"manifest_format {manifest_format!r} / compression {compression!r}: "
            "expected 'v2s2' or 'oci', and 'gzip' or 'zstd'"
        )
    return ImportFormat(oci=manifest_format == "oci", zstd=compression == "zstd")


async def copy(
    source: str | Reference,
    destination: str | Reference,
    *,
    options: RegistryOptions | None = None,
    platforms: Sequence[str | Platform] = (),
    include_foreign: bool = False,
    referrers: bool = False,
    digest_tags: bool = True,
    progress: ProgressSink | None = None,
    manifest_format: str = "v2s2",
    compression: str = "gzip",
    policy: Policy | None = None,
) -> CopyResult:
    """Copy one image between any two endpoints (`docker://`, `oci:`, `oci-archive:`,
    `docker-archive:`); return what was done.

    All platforms of an index are copied unless `platforms` names some: one platform copies
    that image alone under the tag; several write a new index of just those (a new digest).
    Into a docker archive, one platform only: this machine's unless `platforms` names one.
    `referrers`: also what refers to it, to any depth, and (with `digest_tags`) cosign's
    `sha256-<hex>.sig/.att/.sbom` tags beside any of its manifests. An image read from a
    docker archive gets a new manifest: `manifest_format` "v2s2" (Docker) or "oci", layers
    compressed with `compression` "gzip" or "zstd" (zstd implies OCI). `policy`: the
    signature policy that must admit the image first (`Refused` otherwise, nothing written);
    its signatures come along (a docker archive keeps none).
    """
    from mirror.attached import copy_attached
    from mirror.copy_options import CopyOptions
    from mirror.engine import CopyRun

    src_ref, dst_ref = _parse(source), check_destination(_parse(destination))
    imported = _import_format(manifest_format, compression)
    wanted = tuple(p if isinstance(p, Platform) else Platform.parse(p) for p in platforms)
    single_must_match = True
    if isinstance(dst_ref, DockerArchiveReference):
        if referrers:
            raise InvalidReference(f"{dst_ref}: a docker archive keeps no referrers")
        if not wanted:
            wanted, single_must_match = (Platform.host(),), False
        if dst_ref.image is None and isinstance(src_ref, RegistryReference) and src_ref.tag:
            dst_ref = DockerArchiveReference(dst_ref.path, repo_tag(src_ref))
    opts = options or RegistryOptions()
    copy_options = CopyOptions.for_registries(
        opts,
        platforms=wanted,
        single_must_match=single_must_match,
        include_foreign=include_foreign,
        referrers=referrers,
        digest_tags=digest_tags,
        progress=progress,
        policy=policy,
    )
    if isinstance(dst_ref, DockerArchiveReference):
        copy_options = replace(copy_options, referrers=False)
    async with (
        RegistryClient(opts) as client,
        open_source(src_ref, client, imported=imported) as (src, src_tag),
        open_destination(dst_ref, client) as (dst, dst_tag),
    ):
        run = CopyRun(identity=_identity(src_ref)) if policy is not None else None
        result = await copy_attached(src, src_tag, dst, dst_tag, copy_options, run=run)
        result.rate_limits = {host: b.to_json() for host, b in client.budgets().items()}
    if (
        isinstance(dst_ref, RegistryReference)
        and dst_ref.digest
        and dst_ref.digest != result.digest
    ):
        raise InvalidReference(
            f"{dst_ref}: the copied image has digest {result.digest}, not the one named"
        )
    return result


@dataclass
class ImageInfo:
    """What `inspect` shows: the manifest, and per platform its config and layers."""

    reference: str
    digest: str
    media_type: str
    size: int
    raw: bytes = field(repr=False)
    platforms: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out: dict[str, Any] = {
            "reference": self.reference,
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platforms:
            out["platforms"] = self.platforms
        if self.config:
            out["config"] = self.config
        if self.layers:
            out["layers"] = self.layers
            out["layersSize"] = sum(layer["size"] for layer in self.layers)
        return out


async def inspect(
    reference: str | Reference, *, options: RegistryOptions | None = None
) -> ImageInfo:
    """Digest, media type, platforms, layers and sizes of an image (manifest verified)."""
    ref = _parse(reference)
    async with RegistryClient(options) as client, open_source(ref, client) as (endpoint, tag):
        manifest = await endpoint.manifest_get(tag)
        info = ImageInfo(
            reference=str(ref),
            digest=str(manifest.digest),
            media_type=manifest.media_type,
            size=manifest.size,
            raw=manifest.raw,
            artifact_type=manifest.artifact_type,
        )
        if isinstance(manifest, Index):
            info.platforms = [
                {
                    "platform": str(child.platform) if child.platform else None,
                    "digest": str(child.digest),
                    "mediaType": child.media_type,
                    "size": child.size,
                }
                for child in manifest.manifests
            ]
        elif isinstance(manifest, Manifest):
            info.layers = [
                {"digest": str(layer.digest), "mediaType": layer.media_type, "size": layer.size}
                for layer in manifest.layers
            ]
            info.config = await _config_summary(endpoint, manifest)
        return info


async def _config_summary(endpoint: ImageSource, manifest: ManifestLike) -> dict[str, Any]:
    assert isinstance(manifest, Manifest)
    desc = manifest.config
    summary: dict[str, Any] = {
        "digest": str(desc.digest),
        "mediaType": desc.media_type,
        "size": desc.size,
    }
    config = await read_config(endpoint, manifest)
    if config is not None:
        for key in ("os", "architecture", "variant", "created"):
            if isinstance(config.get(key), str):
                summary[key] = config[key]
    return summary


async def list_tags(
    repository: str | Reference, *, options: RegistryOptions | None = None
) -> list[str]:
    """Every tag of a registry repository (or every image name of a layout, or every
    RepoTag of a docker archive)."""
    ref = _parse(repository)
    if isinstance(ref, DockerArchiveReference):
        from mirror.archive.docker_tar import DockerArchive

        archive = await asyncio.to_thread(DockerArchive.open, Path(ref.path))
        entries = await asyncio.to_thread(archive.entries)
        return [tag for entry in entries for tag in entry.repo_tags]
    async with RegistryClient(options) as client, open_source(ref, client) as (endpoint, _):
        return [tag async for tag in endpoint.tags()]


async def list_repositories(registry: str, *, options: RegistryOptions | None = None) -> list[str]:
    """Every repository of a registry (the catalog API), `registry` being host[:port]."""
    host = registry.removeprefix("docker://").rstrip("/")
    if not host or "/" in host:
        raise InvalidReference(f"invalid registry {registry!r}: expected host[:port]")
    async with RegistryClient(options) as client:
        return [name async for name in client.catalog(host)]
