"""A copy into `docker-archive:` — the tar `docker load` reads — as a write-only endpoint.

Each layer arrives compressed as the registry holds it; it is hashed as it streams (its
digest checked) and decompressed into a staging directory beside the archive, which gives
its diff_id. Configs are staged as they are. When the copy ends, every image's config is
checked against the diff_ids of its layers, and the archive is written in one pass — configs
as `<hex>.json`, layers as `<diff_id hex>.tar`, `manifest.json` with `RepoTags`,
`repositories` — to a temporary file that is fsynced and renamed into place (skopeo's member
names, which `docker load` and skopeo both read). A docker archive holds single-platform
images only: an index is refused (the copy chooses a platform first).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from mirror.archive.docker_tar import MAX_CONFIG_SIZE
from mirror.archive.writeonly import WriteOnly, receive
from mirror.endpoint import BlobSource
from mirror.errors import BlobNotFound, ContentError, UnsupportedOperation
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Index, Manifest, ManifestLike
from mirror.retry import RetryPolicy
from mirror.support.fsutil import fsync_dir, temp_name
from mirror.support.oserrors import storage_boundary
from mirror.support.tasks import finish_in_thread

__all__ = ["DockerArchiveWriter"]

_GZIP_LAYERS = frozenset({mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP})
_ZSTD_LAYERS = frozenset({mt.OCI_LAYER_ZSTD})
_TAR_LAYERS = frozenset({mt.OCI_LAYER_TAR})
_IMAGE_CONFIGS = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})


@dataclass(frozen=True)
class _Staged:
    """A blob in the staging directory: the file, and for a layer its diff_id."""

    file: Path
    diff_id: str | None


def _inflater(media_type: str) -> Any:
    """Something with `decompress(bytes)` for a layer media type (None: stored as is)."""
    if media_type in _GZIP_LAYERS:
        return zlib.decompressobj(wbits=47)
    if media_type in _ZSTD_LAYERS:
        return zstandard.ZstdDecompressor().decompressobj()
    return None


class DockerArchiveWriter(WriteOnly):
    """A new docker archive: blobs staged as they come, the tar written by `finish`."""

    def __init__(self, path: Path, retry: RetryPolicy | None = None) -> None:
        self.path = path
        self.where = f"docker archive {path}"
        self.retry = retry or RetryPolicy()
        self._stage = path.parent / temp_name(f".{path.name}.stage")
        self._tmp = path.parent / temp_name(f".{path.name}")
        self._blobs: dict[str, _Staged] = {}
        #: (config digest, layer digests, RepoTags) per image, in the order copied
        self._images: list[tuple[str, list[str], list[str]]] = []
        self._lock = asyncio.Lock()

    @storage_boundary
    async def start(self) -> None:
        """Create the staging directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stage.mkdir()

    async def blob_exists(self, desc: Descriptor) -> bool:
        """True when the blob is already staged."""
        return str(desc.digest) in self._blobs

    @storage_boundary
    async def blob_put(self, desc: Descriptor, source: BlobSource) -> None:
        """Stage a blob, hashed as it comes (a layer decompressed: its diff_id); refused when
        its digest or size is wrong."""
        if await self.blob_exists(desc):
            return
        is_layer = desc.media_type in _GZIP_LAYERS | _ZSTD_LAYERS | _TAR_LAYERS
        if not is_layer and desc.size > MAX_CONFIG_SIZE:
            raise UnsupportedOperation(
                f"blob {desc.digest} ({desc.media_type}) is no image layer or config: "
                "a docker archive holds container images only"
            )
        staged = self._stage / desc.digest.encoded
        inflate = _inflater(desc.media_type)
        tar_hash = hashlib.sha256()
        with open(staged, "wb") as out:

            def write(chunk: bytes) -> None:
                try:
                    data = inflate.decompress(chunk) if inflate is not None else chunk
                except (zlib.error, zstandard.ZstdError) as exc:
                    raise ContentError(f"layer {desc.digest} does not decompress: {exc}") from None
                out.write(data)
                tar_hash.update(data)

            await receive(desc, source, write, self.retry)
            if inflate is not None and not getattr(inflate, "eof", True):
                raise ContentError(f"layer {desc.digest}: the compressed stream ends early")
        diff_id = f"sha256:{tar_hash.hexdigest()}" if is_layer else None
        self._blobs[str(desc.digest)] = _Staged(staged, diff_id)

    @storage_boundary
    async def manifest_put(self, manifest: ManifestLike) -> Descriptor:
        """Check that the manifest is a container image whose blobs are staged."""
        if isinstance(manifest, Index):
            raise UnsupportedOperation(
                "a docker archive holds single-platform images: choose one with --platform"
            )
        assert isinstance(manifest, Manifest)
        if manifest.config.media_type not in _IMAGE_CONFIGS:
            raise UnsupportedOperation(
                f"{manifest.digest} is an artifact ({manifest.config.media_type}), "
                "not a container image: a docker archive cannot hold it"
            )
        for child in manifest.children:
            if str(child.digest) not in self._blobs:
                raise BlobNotFound(
                    f"cannot store manifest {manifest.digest}: {child.digest} is missing"
                )
        return manifest.descriptor()

    @storage_boundary
    async def image_put(self, manifest: ManifestLike, tag: str | None) -> Descriptor:
        """Add the image to `manifest.json`, tagged NAME:TAG when `tag` is given."""
        desc = await self.manifest_put(manifest)
        assert isinstance(manifest, Manifest)
        layers = [str(layer.digest) for layer in manifest.layers]
        for config, known, tags in self._images:
            if config == str(manifest.config.digest) and known == layers:
                if tag and tag not in tags:
                    tags.append(tag)
                return desc
        self._images.append((str(manifest.config.digest), layers, [tag] if tag else []))
        return desc

    async def tags(self) -> AsyncIterator[str]:
        """The RepoTags written so far."""
        for _, _, tags in self._images:
            for tag in tags:
                yield tag

    def _check_diff_ids(self, config_digest: str, layers: list[str]) -> None:
        config = json.loads(self._blobs[config_digest].file.read_bytes())
        said = config.get("rootfs", {}).get("diff_ids") if isinstance(config, dict) else None
        found = [self._blobs[layer].diff_id for layer in layers]
        if said != found:
            raise ContentError(
                f"image config {config_digest}: its rootfs.diff_ids do not match its layers"
            )

    def _write_tar(self) -> None:
        entries: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        written: set[str] = set()
        with tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT) as tar:

            def add(name: str, file: Path) -> None:
                if name in written:
                    return
                written.add(name)
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = file.stat().st_size, 0o644, 0
                with open(file, "rb") as f:
                    tar.addfile(info, f)

            for config, layers, tags in self._images:
                self._check_diff_ids(config, layers)
                config_name = f"{Digest(config).encoded}.json"
                add(config_name, self._blobs[config].file)
                names = []
                for layer in layers:
                    diff_id = self._blobs[layer].diff_id
                    assert diff_id is not None
                    names.append(f"{Digest(diff_id).encoded}.tar")
                    add(names[-1], self._blobs[layer].file)
                entries.append({"Config": config_name, "RepoTags": tags, "Layers": names})
                for tag in tags:
                    name, _, version = tag.rpartition(":")
                    top = names[-1].removesuffix(".tar") if names else ""
                    repositories.setdefault(name, {})[version] = top
            for name, data in (
                ("manifest.json", json.dumps(entries).encode()),
                ("repositories", json.dumps(repositories).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        with open(self._tmp, "rb+") as f:
            os.fsync(f.fileno())

    @storage_boundary
    async def finish(self) -> None:
        """Write the archive (configs checked against their layers), fsync, rename."""
        if not self._images:
            raise UnsupportedOperation(f"docker archive {self.path}: no image was copied into it")
        try:
            await finish_in_thread(self._write_tar)  # cancelled: it ends before the abort
            os.replace(self._tmp, self.path)
            fsync_dir(self.path.parent)
        finally:
            await self.abort()

    async def abort(self) -> None:
        """Drop the staging directory and any half-written archive."""
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        await asyncio.to_thread(shutil.rmtree, self._stage, True)
