"""Where an image's signatures are found: cosign's digest tag `sha256-<hex>.sig` beside it
(a manifest whose simple-signing layers carry the signature, certificate, chain and Rekor
bundle as annotations), and the OCI 1.1 referrers of the digest that are cosign signatures
(the same manifest as a referrer) or sigstore bundles (cosign 3's, `bundles.py`).

Everything read is bounded: the signature layers' size and count, the annotations (within a
manifest's 4 MiB cap); more than MAX_SIGNATURES signatures is refused, not cut short.
"""

from __future__ import annotations

from mirror.endpoint import ImageSource
from mirror.errors import ManifestNotFound
from mirror.oci.attached import prefix_of
from mirror.oci.digest import Digest
from mirror.oci.model import Descriptor, Manifest, fallback_tag
from mirror.trust.bundles import BUNDLE_TYPES, BadBundle, parse_bundle
from mirror.trust.verify import Signature

__all__ = [
    "CERTIFICATE",
    "CHAIN",
    "COSIGN_ARTIFACT",
    "MAX_SIGNATURES",
    "MAX_SIGNATURE_LAYER",
    "REKOR_BUNDLE",
    "SIGNATURE",
    "SIMPLE_SIGNING",
    "SignaturesUnusable",
    "find_signatures",
]

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
CERTIFICATE = "dev.sigstore.cosign/certificate"
CHAIN = "dev.sigstore.cosign/chain"
REKOR_BUNDLE = "dev.sigstore.cosign/bundle"
#: the most signatures looked at for one digest (more is refused, not cut short)
MAX_SIGNATURES = 100
#: the largest signature payload read
MAX_SIGNATURE_LAYER = 64 * 1024


class SignaturesUnusable(ValueError):
    """Signatures that cannot be read within the bounds; the message says why."""


async def _read(src: ImageSource, desc: Descriptor, where: str) -> bytes:
    if desc.size > MAX_SIGNATURE_LAYER:
        raise SignaturesUnusable(
            f"{where} is {desc.size} bytes, over the {MAX_SIGNATURE_LAYER} byte limit"
        )
    chunks = [chunk async for chunk in src.blob_open(desc)]
    return b"".join(chunks)


async def _from_manifest(src: ImageSource, manifest: Manifest, where: str) -> list[Signature]:
    """The simple-signing layers of a cosign signature manifest, as signatures."""
    layers = [d for d in manifest.layers if d.media_type == SIMPLE_SIGNING]
    if len(layers) > MAX_SIGNATURES:
        raise SignaturesUnusable(
            f"{where} holds {len(layers)} signatures (at most {MAX_SIGNATURES})"
        )
    found = []
    for i, layer in enumerate(layers):
        here = f"{where} layer {i}"
        notes = layer.annotations
        if SIGNATURE not in notes:
            continue  # containers/image: a layer without a signature is no signature
        found.append(
            Signature(
                where=here,
                payload=await _read(src, layer, here),
                signature=notes[SIGNATURE],
                certificate=notes[CERTIFICATE].encode() if CERTIFICATE in notes else None,
                chain=notes[CHAIN].encode() if CHAIN in notes else None,
                rekor_bundle=notes[REKOR_BUNDLE].encode() if REKOR_BUNDLE in notes else None,
            )
        )
    return found


async def _from_bundle(src: ImageSource, manifest: Manifest, where: str) -> list[Signature]:
    """The signature of a sigstore bundle referrer (its one bundle layer); none when the
    bundle is another kind (an attestation) or unreadable — said as the reason it fails."""
    layers = [d for d in manifest.layers if d.media_type in BUNDLE_TYPES]
    if len(layers) != 1:
        return []
    raw = await _read(src, layers[0], f"{where} bundle")
    try:
        return [parse_bundle(raw, where)]
    except BadBundle as exc:
        return [Signature(where=where, payload=b"", signature="", unusable=str(exc))]


async def find_signatures(src: ImageSource, name: str | None, digest: Digest) -> list[Signature]:
    """Every signature of `digest` in `src` (the image read as `name`, whose repository part
    names its digest tags in a layout): its `.sig` digest tag, then its cosign referrers."""
    found: list[Signature] = []
    tag = f"{prefix_of(name)}{fallback_tag(digest)}.sig"
    try:
        manifest = await src.manifest_get(tag)
    except ManifestNotFound:
        manifest = None
    if isinstance(manifest, Manifest):
        found += await _from_manifest(src, manifest, f"{tag} ({manifest.digest})")
    listed = (await src.referrers(digest)).descriptors
    signatures = [d for d in listed if d.artifact_type in (COSIGN_ARTIFACT, *BUNDLE_TYPES)]
    if len(signatures) > MAX_SIGNATURES:
        raise SignaturesUnusable(
            f"{len(signatures)} signatures refer to {digest} (at most {MAX_SIGNATURES})"
        )
    for desc in signatures:
        referrer = await src.manifest_get(str(desc.digest))
        if isinstance(referrer, Manifest):
            where = f"referrer {desc.digest}"
            if desc.artifact_type == COSIGN_ARTIFACT:
                found += await _from_manifest(src, referrer, where)
            else:
                found += await _from_bundle(src, referrer, where)
        if len(found) > MAX_SIGNATURES:
            break
    if len(found) > MAX_SIGNATURES:
        raise SignaturesUnusable(f"{digest} has over {MAX_SIGNATURES} signatures")
    return found
