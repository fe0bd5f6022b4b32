"""containers-policy.json(5), the subset mirror reads, into a `Policy`.

    {"default": [REQUIREMENT, …],
     "transports": {"docker": {"SCOPE": [REQUIREMENT, …], …}}}

SCOPE: `host/ns/repo[:tag|@digest]`, `host/ns`, `host[:port]`, `*.domain`, or "" (the
transport's default); the longest match wins (containers/image's order). A REQUIREMENT is
`{"type": "insecureAcceptAnything"}`, `{"type": "reject"}` or `{"type": "sigstoreSigned", …}`
with one of `keyPath`, `keyPaths`, `keyData`, `keyDatas` (base64 of PEM) or `fulcio`
(`caPath`|`caData`, `oidcIssuer`, `subjectEmail`, and then a Rekor key), an optional
`rekorPublicKeyPath(s)`/`rekorPublicKeyData(s)` and `signedIdentity`. `signedBy` (GPG), other
transports than `docker` (`docker-daemon` is read and ignored: mirror never reads a daemon)
and any unknown field are one error naming the file and the field.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mirror.errors import InvalidReference, LayoutError, MirrorError
from mirror.oci.reference import RegistryReference, parse_registry_reference
from mirror.support.fsutil import read_capped
from mirror.support.jsonutil import no_duplicate_keys
from mirror.trust.identity import (
    ExactReference,
    ExactRepository,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
    SignedIdentity,
    plain,
)
from mirror.trust.keys import (
    MAX_PEM,
    BadKey,
    PublicKey,
    certificates_from_pem,
    public_key_from_pem,
)

__all__ = [
    "MAX_POLICY",
    "AcceptAnything",
    "Fulcio",
    "Policy",
    "PolicyError",
    "Reject",
    "Requirement",
    "SigstoreSigned",
    "load_policy",
    "parse_policy",
    "scopes_of",
]

#: the largest policy file read
MAX_POLICY = 1024 * 1024
#: the most keys one requirement lists
_MAX_KEYS = 64


class PolicyError(MirrorError):
    """A policy file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class AcceptAnything:
    """`insecureAcceptAnything`: any image, signed or not."""


@dataclass(frozen=True)
class Reject:
    """`reject`: no image."""


@dataclass(frozen=True)
class Fulcio:
    """Keyless signing: a certificate chaining to `roots`, for `issuer` and `email`."""

    roots: tuple[x509.Certificate, ...]
    issuer: str
    email: str


@dataclass(frozen=True)
class SigstoreSigned:
    """`sigstoreSigned`: a cosign signature by one of `keys`, or (keyless) a `fulcio`
    certificate; with `rekor_keys`, a Rekor entry signed by one of them."""

    keys: tuple[PublicKey, ...] = ()
    fulcio: Fulcio | None = None
    rekor_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    identity: SignedIdentity = field(default_factory=MatchRepoDigestOrExact)


Requirement = AcceptAnything | Reject | SigstoreSigned


@dataclass(frozen=True)
class Policy:
    """A policy read from `path`: the default requirements and the docker transport's
    scopes."""

    path: str
    default: tuple[Requirement, ...]
    docker: dict[str, tuple[Requirement, ...]] = field(default_factory=dict)

    def requirements_for(
        self, image: RegistryReference | None
    ) -> tuple[str, tuple[Requirement, ...]]:
        """The scope that applies to `image` and its requirements: the longest docker scope
        that matches, else the docker transport's "", else `default` (also for an image not
        read from a registry, `image` None)."""
        if image is not None:
            for scope in scopes_of(image):
                if scope in self.docker:
                    return scope, self.docker[scope]
            if "" in self.docker:
                return 'transports.docker ""', self.docker[""]
        return "default", self.default


def scopes_of(image: RegistryReference) -> list[str]:
    """The scopes that could name `image`, most specific first, as containers/image lists
    them: the reference itself, the repository, each namespace, the host, then `*.domain`
    wildcards of the host without its port."""
    found = [plain(image)] if image.tag or image.digest else []
    name = image.name
    while True:
        found.append(name)
        if "/" not in name:
            break
        name = name.rsplit("/", 1)[0]
    host = name.split(":", 1)[0] if not name.startswith("[") else name
    while "." in host:
        host = host.split(".", 1)[1]
        found.append(f"*.{host}")
    return found


class _Reader:
    """Reads one policy document, each error naming the file and the field."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> PolicyError:
        return PolicyError(f"policy {self.path}: {where}: {what}")

    def table(self, value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "expected an object")
        for key in value:
            if key not in allowed:
                raise self.fail(f"{where}.{key}", "unknown field")
        return value

    def text(self, obj: dict[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.fail(f"{where}.{key}", "expected a non-empty string")
        return value

    def requirements(self, value: Any, where: str) -> tuple[Requirement, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, "expected a non-empty list of requirements")
        return tuple(self.requirement(r, f"{where}[{i}]") for i, r in enumerate(value))

    def requirement(self, value: Any, where: str) -> Requirement:
        if not isinstance(value, dict):
            raise self.fail(where, "expected an object")
        kind = value.get("type")
        if kind == "insecureAcceptAnything":
            self.table(value, where, {"type"})
            return AcceptAnything()
        if kind == "reject":
            self.table(value, where, {"type"})
            return Reject()
        if kind == "signedBy":
            raise self.fail(
                f"{where}.type", "signedBy (GPG signatures) is not supported; use sigstoreSigned"
            )
        if kind == "sigstoreSigned":
            return self.sigstore(value, where)
        raise self.fail(f"{where}.type", f"unknown requirement type {kind!r}")

    def sigstore(self, value: dict[str, Any], where: str) -> SigstoreSigned:
        key_fields = {"keyPath", "keyPaths", "keyData", "keyDatas"}
        rekor_fields = {
            "rekorPublicKeyPath",
            "rekorPublicKeyPaths",
            "rekorPublicKeyData",
            "rekorPublicKeyDatas",
        }
        self.table(value, where, {"type", "fulcio", "signedIdentity", *key_fields, *rekor_fields})
        given = [k for k in (*sorted(key_fields), "fulcio") if k in value]
        if len(given) != 1:
            raise self.fail(
                where, "give exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio"
            )
        key_pems = self.pems(value, given[0], where) if given[0] != "fulcio" else []
        keys = tuple(public_key_of(pem, w, self) for pem, w in key_pems)
        rekor_given = [k for k in sorted(rekor_fields) if k in value]
        if len(rekor_given) > 1:
            raise self.fail(where, "give at most one of " + ", ".join(sorted(rekor_fields)))
        rekor: list[ec.EllipticCurvePublicKey] = []
        for pem, w in self.pems(value, rekor_given[0], where) if rekor_given else ():
            key = public_key_of(pem, w, self)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise self.fail(w, "a Rekor public key is ECDSA")
            rekor.append(key)
        fulcio = self.fulcio(value["fulcio"], f"{where}.fulcio") if "fulcio" in value else None
        if fulcio is not None and not rekor:
            raise self.fail(where, "fulcio needs a Rekor public key (rekorPublicKeyPath)")
        identity = self.identity(value.get("signedIdentity"), f"{where}.signedIdentity")
        return SigstoreSigned(keys, fulcio, tuple(rekor), identity)

    def pems(self, value: dict[str, Any], key: str, where: str) -> list[tuple[bytes, str]]:
        """The PEM texts a `…Path`, `…Paths`, `…Data` or `…Datas` field gives."""
        items = value[key]
        plural = key.endswith("s")
        if plural:
            if not isinstance(items, list) or not items or len(items) > _MAX_KEYS:
                raise self.fail(f"{where}.{key}", f"expected a list of 1 to {_MAX_KEYS} items")
        else:
            items = [items]
        out = []
        for i, item in enumerate(items):
            here = f"{where}.{key}" + (f"[{i}]" if plural else "")
            if not isinstance(item, str) or not item:
                raise self.fail(here, "expected a non-empty string")
            out.append((self.path_or_data(key, item, here), here))
        return out

    def path_or_data(self, key: str, item: str, where: str) -> bytes:
        if "Path" in key:
            try:
                return read_capped(item, MAX_PEM)
            except (OSError, LayoutError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise self.fail(where, f"cannot read {item}: {reason}") from None
        try:
            return base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(where, "not base64") from None

    def fulcio(self, value: Any, where: str) -> Fulcio:
        obj = self.table(value, where, {"caPath", "caData", "oidcIssuer", "subjectEmail"})
        given = [k for k in ("caPath", "caData") if k in obj]
        if len(given) != 1:
            raise self.fail(where, "give exactly one of caPath, caData")
        ((pem, here),) = self.pems(obj, given[0], where)
        try:
            roots = certificates_from_pem(pem)
        except BadKey as exc:
            raise self.fail(here, str(exc)) from None
        issuer = self.text(obj, "oidcIssuer", where)
        email = self.text(obj, "subjectEmail", where)
        if issuer is None or email is None:
            raise self.fail(where, "oidcIssuer and subjectEmail are both required")
        return Fulcio(tuple(roots), issuer, email)

    def identity(self, value: Any, where: str) -> SignedIdentity:
        if value is None:
            return MatchRepoDigestOrExact()
        if not isinstance(value, dict):
            raise self.fail(where, "expected an object")
        kind = value.get("type")
        simple: dict[str, SignedIdentity] = {
            "matchExact": MatchExact(),
            "matchRepoDigestOrExact": MatchRepoDigestOrExact(),
            "matchRepository": MatchRepository(),
        }
        if isinstance(kind, str) and kind in simple:
            self.table(value, where, {"type"})
            return simple[kind]
        if kind == "exactReference":
            self.table(value, where, {"type", "dockerReference"})
            ref = self.reference(value, "dockerReference", where)
            if ref.tag is None and ref.digest is None:
                raise self.fail(f"{where}.dockerReference", "needs a tag or a digest")
            return ExactReference(plain(ref))
        if kind == "exactRepository":
            self.table(value, where, {"type", "dockerRepository"})
            ref = self.reference(value, "dockerRepository", where)
            return ExactRepository(ref.name)
        if kind == "remapIdentity":
            self.table(value, where, {"type", "prefix", "signedPrefix"})
            return RemapIdentity(
                self.prefix(value, "prefix", where), self.prefix(value, "signedPrefix", where)
            )
        raise self.fail(f"{where}.type", f"unknown signedIdentity type {kind!r}")

    def reference(self, value: dict[str, Any], key: str, where: str) -> RegistryReference:
        text = self.text(value, key, where)
        if text is None:
            raise self.fail(f"{where}.{key}", "missing")
        try:
            return parse_registry_reference(text)
        except InvalidReference as exc:
            raise self.fail(f"{where}.{key}", str(exc)) from None

    def prefix(self, value: dict[str, Any], key: str, where: str) -> str:
        """A remapIdentity prefix: `host`, `host/ns…` or a repository (no tag, no digest)."""
        text = self.text(value, key, where)
        if text is None:
            raise self.fail(f"{where}.{key}", "missing")
        if "/" in text:
            try:
                ref = parse_registry_reference(text)
            except InvalidReference as exc:
                raise self.fail(f"{where}.{key}", str(exc)) from None
            if ref.tag or ref.digest or ref.name != text:
                raise self.fail(f"{where}.{key}", f"{text!r} is not host[/namespace…]")
        elif not text.replace(".", "").replace("-", "").replace(":", "").isalnum():
            raise self.fail(f"{where}.{key}", f"{text!r} is not a host")
        return text


def public_key_of(pem: bytes, where: str, reader: _Reader) -> PublicKey:
    """The key in `pem`, or an error naming the field it came from."""
    try:
        return public_key_from_pem(pem)
    except BadKey as exc:
        raise reader.fail(where, str(exc)) from None


def parse_policy(data: bytes, path: str) -> Policy:
    """A policy from the JSON text `data` of the file `path` (PolicyError naming the field)."""
    reader = _Reader(path)
    try:
        doc = json.loads(data, object_pairs_hook=no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"policy {path}: not valid JSON: {exc}") from None
    top = reader.table(doc, "policy", {"default", "transports"})
    if "default" not in top:
        raise reader.fail("default", "missing")
    default = reader.requirements(top["default"], "default")
    transports = reader.table(top.get("transports", {}), "transports", {"docker", "docker-daemon"})
    docker: dict[str, tuple[Requirement, ...]] = {}
    for name, scopes in transports.items():
        table = reader.table(
            scopes, f"transports.{name}", set(scopes) if isinstance(scopes, dict) else set()
        )
        for scope, requirements in table.items():
            where = f"transports.{name}.{scope!r}"
            parsed = reader.requirements(requirements, where)
            if name == "docker":
                _check_scope(scope, where, reader)
                docker[scope] = parsed
    return Policy(path, default, docker)


def _check_scope(scope: str, where: str, reader: _Reader) -> None:
    if scope == "" or (scope.startswith("*.") and "/" not in scope and len(scope) > 2):
        return
    try:
        parse_registry_reference(scope if "/" in scope else f"{scope}/x")
    except InvalidReference as exc:
        raise reader.fail(where, f"not a scope: {exc}") from None


def load_policy(path: str | Path) -> Policy:
    """Read the policy file `path` (at most MAX_POLICY bytes; PolicyError naming it)."""
    try:
        data = read_capped(path, MAX_POLICY)
    except (OSError, LayoutError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise PolicyError(f"policy {path}: cannot read it: {reason}") from None
    return parse_policy(data, str(path))
