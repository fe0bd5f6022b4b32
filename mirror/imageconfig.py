"""An image's config read as JSON: only a config that says it is JSON, never more than the
manifest cap, verified like every blob."""

from __future__ import annotations

from typing import Any

from mirror.endpoint import ImageSource
from mirror.errors import ManifestInvalid
from mirror.oci import mediatypes as mt
from mirror.oci.model import Manifest
from mirror.support import jsonutil

__all__ = ["read_config"]


async def read_config(endpoint: ImageSource, manifest: Manifest) -> dict[str, Any] | None:
    """The config of `manifest` as a JSON object; None when its media type is not JSON, it is
    over the 4 MiB cap, or it is not an object. Raises ManifestInvalid when it is not JSON."""
    desc = manifest.config
    if desc.size > mt.MAX_MANIFEST_SIZE or "json" not in desc.media_type:
        return None
    raw = b"".join([chunk async for chunk in endpoint.blob_open(desc)])
    try:
        obj = jsonutil.loads(raw)
    except ValueError:
        raise ManifestInvalid(f"config {desc.digest} is not JSON") from None
    return obj if isinstance(obj, dict) else None
