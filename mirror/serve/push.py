"""The push side, for `--writable`: blob uploads (monolithic POST or POST+PUT, chunked
PATCH with `Content-Range`, `Range` and `Location`, cross-repository mounts), manifest PUT
by tag and digest, and DELETE with `--allow-delete`; everything written through the
writable layout (`writable.py`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from aiohttp import web

from mirror.errors import BlobNotFound, ContentError, ManifestNotFound, MirrorError
from mirror.oci import mediatypes as mt
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, ManifestLike, parse_manifest
from mirror.serve.answers import ApiError
from mirror.serve.content import Content
from mirror.serve.paths import Kind, Route, check_digest, check_reference
from mirror.serve.writable import Upload, WritableLayout, append, file_source

__all__ = ["Pushes"]

_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?")


class Pushes:
    """The handler of every request that writes."""

    def __init__(
        self,
        content: Content,
        writable: WritableLayout,
        *,
        allow_delete: bool = False,
        max_blob: int = 1024**4,
        stall: float = 60.0,
    ) -> None:
        self.content = content
        self.writable = writable
        self.allow_delete = allow_delete
        self.max_blob = max_blob
        self.stall = stall

    async def __call__(self, request: web.Request, route: Route) -> web.StreamResponse:
        """Answer a push request (or 405 UNSUPPORTED for what is not one)."""
        method = request.method
        if route.kind is Kind.UPLOADS:
            if not route.reference:
                if method == "POST":
                    return await self._start(request, route.name)
            else:
                upload = self.writable.upload(route.name, route.reference)
                if method == "PATCH":
                    return await self._patch(request, upload)
                if method == "PUT":
                    return await self._finish(request, upload)
                if method == "GET":
                    return self._status(upload, 204)
                if method == "DELETE":
                    await self.writable.end_upload(upload)
                    return web.Response(status=204)
        if route.kind is Kind.MANIFEST and method == "PUT":
            return await self._manifest_put(request, route)
        if route.kind is Kind.MANIFEST and method == "DELETE" and self.allow_delete:
            return await self._manifest_delete(route)
        raise ApiError(405, "UNSUPPORTED", f"{method} is not supported here")

    # -- blobs --------------------------------------------------------------------------

    async def _start(self, request: web.Request, name: str) -> web.StreamResponse:
        mount = request.query.get("mount")
        if mount is not None and await self._adopt(check_digest(mount)):
            return _created_blob(name, check_digest(mount))
        upload = await self.writable.start_upload(name)
        digest = request.query.get("digest")
        if digest is not None:  # monolithic: POST ?digest= with the whole blob
            return await self._finish(request, upload)
        return self._status(upload, 202)

    def _status(self, upload: Upload, status: int) -> web.StreamResponse:
        key = self.writable.key_of(upload)
        headers = {
            "Location": f"/v2/{upload.name}/blobs/uploads/{key}",
            "Range": f"0-{max(upload.size - 1, 0)}",
            "Docker-Upload-UUID": key,
        }
        return web.Response(status=status, headers=headers)

    async def _patch(self, request: web.Request, upload: Upload) -> web.StreamResponse:
        async with upload.lock:
            given = request.headers.get("Content-Range")
            if given is not None:
                found = _CONTENT_RANGE.fullmatch(given.strip())
                if found is None or int(found[1]) != upload.size:
                    response = self._status(upload, 416)
                    return response
            await append(upload, self._body(request), self.max_blob)
            return self._status(upload, 202)

    async def _finish(self, request: web.Request, upload: Upload) -> web.StreamResponse:
        digest = check_digest(request.query.get("digest", ""))
        async with upload.lock:
            await append(upload, self._body(request), self.max_blob)
            desc = Descriptor("application/octet-stream", digest, upload.size)
            try:
                async with self.writable.writing() as layout:
                    await layout.blob_put(desc, file_source(upload.path))
            except ContentError:
                raise ApiError(
                    400, "DIGEST_INVALID", "the upload does not match its digest"
                ) from None
            finally:
                await self.writable.end_upload(upload)
        return _created_blob(upload.name, digest)

    async def _adopt(self, digest: Digest) -> bool:
        """Make the blob `digest` the writable layout's, from any served source (a mount);
        False when no source holds it."""
        found = self.content.locate(digest)
        if found is None:
            return False
        desc = Descriptor("application/octet-stream", digest, found.size)
        async with self.writable.writing() as layout:
            if layout.stored_size(digest) != found.size:
                reader = found.source.reader
                await layout.blob_put(desc, lambda offset: reader.blob_open(desc, offset))
        return True

    async def _body(self, request: web.Request) -> AsyncIterator[bytes]:
        """The request body in chunks; a client silent for `stall` seconds is cut off."""
        while True:
            try:
                chunk = await asyncio.wait_for(request.content.readany(), self.stall)
            except TimeoutError:
                raise ApiError(408, "BLOB_UPLOAD_INVALID", "the client stopped sending") from None
            if not chunk:
                return
            yield chunk

    async def _read_capped(self, request: web.Request, cap: int) -> bytes:
        """The whole request body, however it arrives in pieces; 413 past `cap` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self._body(request):
            size += len(chunk)
            if size > cap:
                raise ApiError(413, "SIZE_INVALID", f"a manifest is at most {cap} bytes")
            parts.append(chunk)
        return b"".join(parts)

    # -- manifests ----------------------------------------------------------------------

    async def _manifest_put(self, request: web.Request, route: Route) -> web.StreamResponse:
        reference = check_reference(route.reference, status=400)
        raw = await self._read_capped(request, mt.MAX_MANIFEST_SIZE)
        declared = request.headers.get("Content-Type") or None
        try:
            manifest = parse_manifest(raw, declared)
        except MirrorError as exc:
            raise ApiError(400, "MANIFEST_INVALID", str(exc)) from None
        if isinstance(reference, Digest):
            if Digest.of(raw, reference.algorithm) != reference:
                raise ApiError(400, "DIGEST_INVALID", "the manifest does not match its digest")
            manifest = parse_manifest(raw, declared, digest=reference)
        await self._children_present(manifest)
        async with self.writable.writing() as layout:
            try:
                desc = await layout.manifest_put(manifest)
            except BlobNotFound as exc:
                raise ApiError(400, "MANIFEST_BLOB_UNKNOWN", str(exc)) from None
            if not isinstance(reference, Digest):
                await layout.add_image(desc, f"{route.name}:{reference}")
            elif manifest.subject is not None:  # a referrer: listed, so that gc keeps it
                await layout.add_image(desc)
        headers = {
            "Location": f"/v2/{route.name}/manifests/{desc.digest}",
            "Docker-Content-Digest": str(desc.digest),
        }
        if manifest.subject is not None:
            headers["OCI-Subject"] = str(manifest.subject.digest)
        return web.Response(status=201, headers=headers)

    async def _children_present(self, manifest: ManifestLike) -> None:
        """Every blob and manifest the manifest points at is in the writable layout, taken
        from a read-only source when one holds it (a client saw it there by HEAD)."""
        for child in manifest.children:
            if child.is_foreign:
                continue
            if not await self._adopt(child.digest):
                raise ApiError(
                    400, "MANIFEST_BLOB_UNKNOWN", f"{child.media_type} {child.digest} is unknown"
                )

    async def _manifest_delete(self, route: Route) -> web.StreamResponse:
        reference = check_reference(route.reference)
        try:
            async with self.writable.writing() as layout:
                if isinstance(reference, Digest):
                    await layout.remove_manifest(reference)
                else:
                    await layout.remove_image(f"{route.name}:{reference}")
        except ManifestNotFound:
            raise ApiError(404, "MANIFEST_UNKNOWN", "no such manifest") from None
        return web.Response(status=202)


def _created_blob(name: str, digest: Digest) -> web.StreamResponse:
    headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)}
    return web.Response(status=201, headers=headers)
