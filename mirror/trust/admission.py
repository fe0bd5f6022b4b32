"""`admit`: whether the policy lets an image move, decided before any of its blobs do.

Every requirement of the scope that applies must accept the image (containers/image's
rule): `reject` never does, `insecureAcceptAnything` always does, `sigstoreSigned` when one
signature of one of the image's digests holds (the index's, and with a platform chosen, the
platform manifest's). A refusal is `Refused`, one line naming the image and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mirror.endpoint import ImageSource
from mirror.errors import Refused
from mirror.oci.digest import Digest
from mirror.oci.reference import RegistryReference
from mirror.trust.policy import AcceptAnything, Policy, Reject, SigstoreSigned
from mirror.trust.signatures import SignaturesUnusable, find_signatures
from mirror.trust.verify import Signature, Untrusted, check_signature

__all__ = ["Admission", "admit"]


@dataclass(frozen=True)
class Admission:
    """What admitted an image: the policy's scope, and the key or identity (or
    `insecureAcceptAnything`), with the digest whose signature it was."""

    scope: str
    by: str
    digest: str = ""

    def describe(self) -> str:
        """One line for reports: `key SHA256:… (scope …)`."""
        return f"{self.by} (policy scope {self.scope})"

    def to_json(self) -> dict[str, str]:
        """JSON-ready."""
        out = {"scope": self.scope, "by": self.by}
        if self.digest:
            out["digest"] = self.digest
        return out


async def admit(
    src: ImageSource,
    name: str | None,
    image: RegistryReference | None,
    digests: Sequence[Digest],
    policy: Policy,
    *,
    shown: str,
) -> Admission:
    """Admit the image read from `src` as `name` — identified for `signedIdentity` as
    `image` (None: not read from a registry), its signatures looked for on each of
    `digests` — under `policy`; Refused naming it as `shown` and why."""
    scope, requirements = policy.requirements_for(image)
    where = f"{shown}: refused by policy {policy.path} (scope {scope})"
    found: dict[Digest, list[Signature]] = {}
    admitted: list[Admission] = []
    for rule in requirements:
        if isinstance(rule, Reject):
            raise Refused(f"{where}: the policy rejects every image here")
        if isinstance(rule, AcceptAnything):
            admitted.append(Admission(scope, "insecureAcceptAnything"))
            continue
        admitted.append(await _signed(src, name, image, digests, rule, scope, where, found))
    signed = [a for a in admitted if a.digest]
    return signed[0] if signed else admitted[0]


async def _signed(
    src: ImageSource,
    name: str | None,
    image: RegistryReference | None,
    digests: Sequence[Digest],
    rule: SigstoreSigned,
    scope: str,
    where: str,
    found: dict[Digest, list[Signature]],
) -> Admission:
    reasons: list[str] = []
    count = 0
    for digest in dict.fromkeys(digests):
        if digest not in found:
            try:
                found[digest] = await find_signatures(src, name, digest)
            except SignaturesUnusable as exc:
                raise Refused(f"{where}: {exc}") from None
        for signature in found[digest]:
            count += 1
            try:
                by = check_signature(signature, rule, str(digest), image)
            except Untrusted as exc:
                reasons.append(f"{signature.where}: {exc}")
                continue
            return Admission(scope, by, str(digest))
    if not count:
        raise Refused(f"{where}: no signature")
    shown = "; ".join(dict.fromkeys(reasons[:3]))
    more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
    raise Refused(f"{where}: no valid signature: {shown}{more}")
