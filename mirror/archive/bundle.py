"""Air-gap bundles: many images in one OCI layout archive, verifiable on both sides.

A bundle is an `oci-archive` (`.tar` or `.tar.zst`) whose first member, `mirror-bundle.json`,
records the images (name, digest), every blob they need, and for a delta bundle the blobs it
leaves out because an earlier bundle carried them. Images are named in `index.json` by
`io.containerd.image.name` (always) and `org.opencontainers.image.ref.name` (when the name fits
that grammar), so skopeo reads a bundle's images as `oci-archive:FILE:NAME`.
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.archive.docker_export import DockerArchiveWriter
from mirror.archive.pack import pack_layout
from mirror.archive.part_plan import check_fits
from mirror.archive.parts import Entry, part_info, write_parts
from mirror.archive.recompress import Recompressed, recompress_image
from mirror.archive.unpack import read_record, unpack_layout
from mirror.archive.writeonly import written
from mirror.attached import copy_attached
from mirror.copy_options import CopyOptions
from mirror.engine import CopyResult, CopyRun
from mirror.errors import InvalidReference, LayoutError, NotFound
from mirror.events import ProgressSink, Silent
from mirror.graph import walk_image
from mirror.layout import Layout, Problem, gc, verify
from mirror.layout.check import Flaw
from mirror.layout.reading import LayoutReader
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor
from mirror.oci.platform import Platform
from mirror.oci.reference import (
    RegistryReference,
    parse_registry_reference,
    repo_tag,
    validate_ref_name,
)
from mirror.registry import RegistryClient, RegistryOptions

if TYPE_CHECKING:
    from mirror.trust.admission import Admission
    from mirror.trust.policy import Policy

__all__ = [
    "BundleImage",
    "BundleRecord",
    "PushedImage",
    "admitted_images",
    "check_left_out",
    "create_bundle",
    "create_docker_archive",
    "list_bundle",
    "push_bundle",
    "push_images",
    "verify_bundle",
]

FULL_NAME = "io.containerd.image.name"
FORMAT = 1


@dataclass(frozen=True)
class BundleImage:
    """One image of a bundle."""

    name: str
    digest: str
    media_type: str
    size: int
    #: the index this image's platform was chosen from: its digest tags (a cosign signature
    #: of the index) are carried with the image and pushed with it
    chosen_from: str | None = None
    #: what admitted the image under `bundle create --policy` (the key or identity, the scope)
    admitted: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The image as the record lists it."""
        out: dict[str, Any] = {
            "name": self.name,
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
        }
        if self.chosen_from:
            out["chosenFrom"] = self.chosen_from
        if self.admitted:
            out["admittedBy"] = self.admitted
        return out


@dataclass
class BundleRecord:
    """What `mirror-bundle.json` says."""

    images: list[BundleImage]
    blobs: dict[str, int]
    omitted: list[str] = field(default_factory=list)
    since: str | None = None
    recompressed: list[dict[str, str]] = field(default_factory=list)
    created: str = ""
    #: the images' referrers are in the bundle, and their digest tags (pushed with them)
    referrers: bool = False
    digest_tags: bool = False
    #: the files a split bundle was written as (not part of the record)
    part_files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record as written into the bundle."""
        return {
            "mirrorBundle": FORMAT,
            "created": self.created,
            "images": [i.to_json() for i in self.images],
            "blobs": [{"digest": d, "size": s} for d, s in sorted(self.blobs.items())],
            "omitted": sorted(self.omitted),
            "since": self.since,
            "recompressed": self.recompressed,
            "referrers": self.referrers,
            "digestTags": self.digest_tags,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str) -> BundleRecord:
        """Parse a record; LayoutError naming `where` when it is not one."""
        if not isinstance(obj, dict) or obj.get("mirrorBundle") != FORMAT:
            raise LayoutError(f"{where} is not a mirror bundle (no bundle record)")
        try:
            images = [
                BundleImage(
                    str(i["name"]),
                    str(i["digest"]),
                    str(i["mediaType"]),
                    int(i["size"]),
                    str(Digest(i["chosenFrom"])) if i.get("chosenFrom") else None,
                    {str(k): str(v) for k, v in i["admittedBy"].items()}
                    if i.get("admittedBy")
                    else None,
                )
                for i in obj.get("images", [])
            ]
            blobs = {str(b["digest"]): int(b["size"]) for b in obj.get("blobs", [])}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LayoutError(f"{where}: the bundle record is malformed") from None
        return cls(
            images=images,
            blobs=blobs,
            omitted=[str(d) for d in obj.get("omitted", [])],
            since=obj.get("since"),
            recompressed=list(obj.get("recompressed", [])),
            created=str(obj.get("created", "")),
            referrers=obj.get("referrers") is True,
            digest_tags=obj.get("digestTags") is True,
        )


def _image_ref(name: str) -> RegistryReference:
    ref = parse_registry_reference(name.removeprefix("docker://"), original=name)
    if not ref.tag and not ref.digest:
        ref = ref.with_reference(tag="latest")
    return ref


def _bundle_name(ref: RegistryReference) -> str:
    name = ref.name
    if ref.tag:
        name += f":{ref.tag}"
    if ref.digest:
        name += f"@{ref.digest}"
    return name


async def _blobs_of(
    layout: LayoutReader, desc: Descriptor, out: dict[str, int], manifests: set[str] | None = None
) -> None:
    """Record the digest and size of every manifest and blob of the image at `desc` (and,
    in `manifests`, which of them are manifests)."""
    graph = await walk_image(
        await layout.manifest_by_descriptor(desc),
        layout.manifest_by_descriptor,
        include_foreign=False,
    )
    for manifest in graph.manifests:
        out[str(manifest.digest)] = manifest.size
        if manifests is not None:
            manifests.add(str(manifest.digest))
    for blob in graph.blobs.values():
        out[str(blob.digest)] = blob.size


async def create_bundle(
    out: Path,
    images: Sequence[str],
    *,
    options: RegistryOptions | None = None,
    since: Path | None = None,
    recompress: str | None = None,
    platforms: Sequence[Platform] = (),
    referrers: bool = False,
    digest_tags: bool = True,
    progress: ProgressSink | None = None,
    policy: Policy | None = None,
    max_part_size: int | None = None,
) -> tuple[BundleRecord, list[CopyResult]]:
    """Copy `images` (registry references) into one bundle file; a delta with `since`; with
    `max_part_size`, into parts `OUT.part-0001` … of at most that many bytes, each a plain-tar
    bundle of its own (`mirror.archive.parts`). With `policy`, each image is admitted first
    (what admitted it is recorded) and its signatures are carried."""
    sink = progress or Silent()
    if max_part_size is not None and out.suffix in (".zst", ".zstd"):
        raise InvalidReference(
            "parts are plain tar (each read in place, its size known before it is written): "
            f"name the bundle without {out.suffix}"
        )
    if recompress not in (None, "zstd"):
        raise InvalidReference(f"recompression takes zstd, not {recompress!r}")
    if recompress and (referrers or policy is not None):
        raise InvalidReference(
            "recompression changes the images' digests, so their referrers would name "
            "subjects that are not in the bundle: choose one of them"
        )
    refs = [_image_ref(i) for i in images]
    previous = await asyncio.to_thread(read_record, since) if since else None
    if since is not None and previous is None:
        raise LayoutError(f"{since} is not a mirror bundle (no bundle record)")
    carried = _carried_by(previous, since) if previous and since else set()
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".mirror-bundle-", dir=out.parent))
    opts = options or RegistryOptions()
    copy_options = CopyOptions.for_registries(
        opts,
        platforms=tuple(platforms),
        referrers=referrers,
        digest_tags=digest_tags,
        progress=sink,
        policy=policy,
    )
    try:
        results, record = [], BundleRecord(images=[], blobs={})
        record.referrers = copy_options.referrers
        record.digest_tags = copy_options.referrers and copy_options.digest_tags
        manifests: set[str] = set()  # always kept in a delta: they are small
        async with (
            RegistryClient(opts) as client,
            await Layout.open(work / "layout", create=True, retry=opts.retry) as layout,
        ):
            for ref in refs:
                name = _bundle_name(ref)
                result = await copy_attached(
                    client.repository(ref),
                    ref.reference,
                    layout,
                    None,
                    copy_options,
                    run=CopyRun(identity=ref),
                )
                desc = await layout.resolve(result.digest)
                chosen_from = result.source_digest if result.digest_changed else None
                if recompress:
                    sink.phase(f"recompressing {name} to zstd")
                    changed: Recompressed = await recompress_image(layout, desc)
                    if changed.changes:
                        await _drop_unnamed(layout, str(desc.digest))
                    desc = changed.descriptor
                    record.recompressed.extend(changed.changes)
                    result.digest, result.digest_changed = str(desc.digest), bool(changed.changes)
                await layout.add_image(desc, _ref_name(name), {FULL_NAME: name})
                needs: dict[str, int] = {}
                await _blobs_of(layout, desc, needs, manifests)
                if max_part_size is not None:
                    new = {d: s for d, s in needs.items() if d not in carried}
                    check_fits(new, max_part_size, name)
                record.blobs.update(needs)
                admitted = result.admitted.to_json() if result.admitted else None
                record.images.append(
                    BundleImage(
                        name, str(desc.digest), desc.media_type, desc.size, chosen_from, admitted
                    )
                )
                results.append(result)
        if recompress:  # the gzip originals are no longer referenced
            async with await Layout.open(work / "layout") as finished:
                await gc(finished)
        record.omitted = sorted(d for d in record.blobs if d in carried and d not in manifests)
        record.since = since.name if since else None
        record.created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        if max_part_size is not None:
            sink.phase(f"writing the parts of {out}")
            record.part_files = await _write_parts(work / "layout", out, record, max_part_size)
            return record, results
        sink.phase(f"writing {out}")
        await asyncio.to_thread(
            pack_layout,
            work / "layout",
            out,
            compress=out.suffix in (".zst", ".zstd"),
            record=record.to_json(),
            leave_out=frozenset(record.omitted),
        )
        return record, results
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


def _carried_by(previous: dict[str, Any], since: Path) -> set[str]:
    """The blobs a previous bundle carried (or left out, being at the target already): for a
    part of a split bundle, those of its whole set."""
    info = part_info(previous, since)
    if info is not None:
        return {b["digest"] for b in info.contents["blobs"]} | set(info.contents["omitted"])
    return set(BundleRecord.from_json(previous, str(since)).blobs)


async def _write_parts(
    layout_dir: Path, out: Path, record: BundleRecord, max_size: int
) -> list[Path]:
    """The assembled layout written as parts of `out`, each at most `max_size` bytes."""
    entries, blobs = [], {}
    async with await Layout.open(layout_dir) as layout:
        for i, entry in enumerate((await layout.read_index())["manifests"]):
            needs: dict[str, int] = {}
            await _blobs_of(layout, Descriptor.from_json(entry, f"index entry {i}"), needs)
            entries.append(Entry(entry, frozenset(needs)))
            blobs.update(needs)
    record_json = record.to_json()
    return await asyncio.to_thread(
        write_parts, layout_dir, out, record_json, entries, blobs, max_size
    )


async def create_docker_archive(
    out: Path,
    images: Sequence[str],
    *,
    options: RegistryOptions | None = None,
    platforms: Sequence[Platform] = (),
    progress: ProgressSink | None = None,
) -> list[tuple[str, CopyResult]]:
    """Copy `images` (registry references) into one docker archive that `docker load` reads,
    each under its RepoTag, one platform each (this machine's unless `platforms` names one);
    the RepoTag and what was copied, per image."""
    opts = options or RegistryOptions()
    copy_options = CopyOptions.for_registries(  # one platform each: this machine's by default
        opts,
        platforms=tuple(platforms) or (Platform.host(),),
        single_must_match=bool(platforms),
        progress=progress,
    )
    done: list[tuple[str, CopyResult]] = []
    async with (
        written(DockerArchiveWriter(out, opts.retry)) as writer,
        RegistryClient(opts) as client,
    ):
        for ref in (_image_ref(i) for i in images):
            result = await copy_attached(
                client.repository(ref), ref.reference, writer, repo_tag(ref), copy_options
            )
            done.append((repo_tag(ref) or _bundle_name(ref), result))
    return done


async def _drop_unnamed(layout: Layout, digest: str) -> None:
    def edit(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in entries if e.get("digest") != digest or e.get("annotations")]

    await layout.update_index(edit)


def _ref_name(name: str) -> str | None:
    try:
        validate_ref_name(name)
    except InvalidReference:
        return None
    return name


async def list_bundle(path: Path) -> BundleRecord:
    """The record of a bundle, read from its first member without unpacking it."""
    record = await asyncio.to_thread(read_record, path)
    return BundleRecord.from_json(record, str(path))


async def _unpacked(path: Path, work: Path, sink: ProgressSink) -> tuple[Layout, BundleRecord]:
    sink.phase(f"unpacking {path}")
    await asyncio.to_thread(unpack_layout, path, work / "layout")
    sink.phase(f"verifying {path}")
    layout = await Layout.open(work / "layout")
    record = await asyncio.to_thread(read_record, path)
    return layout, BundleRecord.from_json(record, str(path))


async def _problems(layout: Layout, record: BundleRecord) -> list[Problem]:
    omitted = set(record.omitted)
    problems = [
        p for p in await verify(layout) if not (p.kind is Flaw.MISSING and p.subject in omitted)
    ]
    listed = {(i.name, str(i.digest)) for i in record.images}
    present = {
        (img.descriptor.annotations.get(FULL_NAME), str(img.descriptor.digest))
        for img in await layout.images()
    }
    for name, digest in sorted(listed - present):
        problems.append(
            Problem(Flaw.RECORD, name, f"{name} ({digest}) is in the record, not the index")
        )
    return problems


async def verify_bundle(path: Path, *, progress: ProgressSink | None = None) -> list[Problem]:
    """Re-hash every blob of a bundle and check every reference (left-out blobs excepted)."""
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="mirror-verify-"))
    try:
        layout, record = await _unpacked(path, work, progress or Silent())
        async with layout:
            return await _problems(layout, record)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


@dataclass(frozen=True)
class PushedImage:
    """One image pushed from a bundle."""

    name: str
    target: str
    result: CopyResult


def target_of(name: str, destination: str) -> RegistryReference:
    """Where bundle image `name` goes under `REGISTRY[/PREFIX]`."""
    source = _image_ref(name)
    host, _, prefix = destination.removeprefix("docker://").strip("/").partition("/")
    repository = f"{prefix}/{source.repository}" if prefix else source.repository
    return parse_registry_reference(f"{host}/{repository}").with_reference(
        tag=source.tag, digest=source.digest
    )


async def push_bundle(
    path: Path,
    destination: str,
    *,
    options: RegistryOptions | None = None,
    progress: ProgressSink | None = None,
    policy: Policy | None = None,
) -> list[PushedImage]:
    """Push every image of a bundle to `REGISTRY[/PREFIX]`.

    The whole bundle is unpacked and verified first, and a delta's left-out blobs are checked
    at the target: any problem stops the push before anything is written. With `policy`,
    every image is admitted again, offline, from the signatures the bundle carries (judged
    as the image it was taken from): one refused, nothing is pushed. Then each image goes
    blobs first, manifests after their blobs, the tag last (resumable like any copy).
    """
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="mirror-push-"))
    opts = options or RegistryOptions()
    sink = progress or Silent()
    try:
        layout, record = await _unpacked(path, work, sink)
        copy_options = CopyOptions.for_registries(
            opts, referrers=record.referrers, digest_tags=record.digest_tags, progress=sink
        )
        async with layout, RegistryClient(opts) as client:
            problems = await _problems(layout, record)
            if problems:
                raise LayoutError(f"bundle {path} is damaged, nothing pushed: {problems[0]}")
            targets = [(image, target_of(image.name, destination)) for image in record.images]
            await check_left_out(layout, record, targets, client)
            admitted = (
                await admitted_images(layout, record.images, f"bundle {path}", policy)
                if policy
                else {}
            )
            return await push_images(layout, targets, client, copy_options, admitted)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def push_images(
    source: LayoutReader,
    targets: Sequence[tuple[BundleImage, RegistryReference]],
    client: RegistryClient,
    options: CopyOptions,
    admitted: Mapping[str, Admission],
) -> list[PushedImage]:
    """Push each bundle image of `source` to its target in turn, with what is attached to it
    and what admitted it (`admitted`, by name); a phase line for each; what was pushed."""
    pushed = []
    for image, target in targets:
        result = await copy_attached(
            source,
            image.digest,
            client.repository(target, writing=True),
            target.tag,
            options,
            run=CopyRun(chosen_from=image.chosen_from),
        )
        result.admitted = admitted.get(image.name)
        pushed.append(PushedImage(image.name, str(target), result))
        options.progress.phase(f"pushed {image.name} to {target}")
    return pushed


async def admitted_images(
    source: LayoutReader, images: Sequence[BundleImage], where: str, policy: Policy
) -> dict[str, Admission]:
    """Every image of a bundle (or of the parts given, `where`) admitted by `policy` from the
    signatures it carries (Refused for the first that is not: nothing is pushed)."""
    from mirror.trust.admission import admit  # cryptography loads only with a policy

    admitted = {}
    for image in images:
        digests = [Digest(image.digest)]
        if image.chosen_from:
            digests.append(Digest(image.chosen_from))
        admitted[image.name] = await admit(
            source,
            image.digest,
            _image_ref(image.name),
            digests,
            policy,
            shown=f"{image.name} ({where}, nothing pushed)",
        )
    return admitted


async def check_left_out(
    layout: LayoutReader,
    record: BundleRecord,
    targets: list[tuple[BundleImage, RegistryReference]],
    client: RegistryClient,
) -> None:
    """NotFound naming them when the targets lack blobs the delta bundle leaves out."""
    if not record.omitted:
        return
    omitted = set(record.omitted)
    missing: list[str] = []
    for image, target in targets:
        needed: dict[str, int] = {}
        await _blobs_of(layout, await layout.resolve(image.digest), needed)
        repo = client.repository(target)
        for digest in sorted(set(needed) & omitted):
            probe = Descriptor("application/octet-stream", Digest(digest), needed[digest])
            if not await repo.blob_exists(probe):
                missing.append(f"{target.name}@{digest}")
    if missing:
        raise NotFound(
            f"the target lacks {len(missing)} blob(s) this delta bundle leaves out "
            f"(push the bundle it is a delta of first): {', '.join(missing[:5])}"
            + (" …" if len(missing) > 5 else "")
        )
