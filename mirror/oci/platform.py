"""Platforms (`linux/arm64/v8`): parsing, normalising and matching."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirror.errors import ManifestInvalid

__all__ = ["Platform"]

# Architecture aliases as containerd's platforms package normalises them.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}
# The variant an architecture has when none is written.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True)
class Platform:
    """An OS/architecture pair with optional variant and OS version, as in an image index."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = field(default=(), compare=False)
    features: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os/arch[/variant]`; `os` may carry a version: `windows:10.0.17763/amd64`."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        os_name, _, os_version = parts[0].partition(":")
        return cls(
            os=os_name.lower(),
            architecture=parts[1].lower(),
            variant=parts[2].lower() if len(parts) == 3 else None,
            os_version=os_version or None,
        )

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform in image terms (`linux/amd64` on x86-64 Linux), as skopeo
        picks one when a single image must be chosen."""
        machine = platform.machine().lower()
        return cls(os="linux", architecture=_ARCH_ALIASES.get(machine, machine))

    @classmethod
    def from_json(cls, obj: Any) -> Platform:
        """Build from the `platform` object of an index descriptor."""
        if not isinstance(obj, Mapping):
            raise ManifestInvalid("platform must be a JSON object")
        os_name, arch = obj.get("os"), obj.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise ManifestInvalid("platform needs string 'os' and 'architecture'")
        variant, os_version = obj.get("variant"), obj.get("os.version")
        return cls(
            os=os_name,
            architecture=arch,
            variant=variant if isinstance(variant, str) and variant else None,
            os_version=os_version if isinstance(os_version, str) and os_version else None,
            os_features=tuple(str(x) for x in obj.get("os.features") or ()),
            features=tuple(str(x) for x in obj.get("features") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object written in descriptors."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        if self.features:
            out["features"] = list(self.features)
        return out

    def normalized(self) -> Platform:
        """Same platform with architecture aliases resolved and the default variant filled in."""
        arch = _ARCH_ALIASES.get(self.architecture.lower(), self.architecture.lower())
        variant = (self.variant or _DEFAULT_VARIANT.get(arch) or "").lower() or None
        if arch == "arm64" and variant == "8":
            variant = "v8"
        return Platform(self.os.lower(), arch, variant, self.os_version)

    def matches(self, candidate: Platform) -> bool:
        """True when `candidate` (from an index) satisfies this wanted platform.

        OS, architecture and variant must agree after normalising; an OS version is compared
        only when this platform names one, and then by prefix (`10.0.17763` matches
        `10.0.17763.1879`).
        """
        want, have = self.normalized(), candidate.normalized()
        if (want.os, want.architecture, want.variant) != (have.os, have.architecture, have.variant):
            return False
        if want.os_version:
            return bool(have.os_version) and (
                have.os_version == want.os_version
                or str(have.os_version).startswith(want.os_version + ".")
            )
        return True

    def __str__(self) -> str:
        head = f"{self.os}:{self.os_version}" if self.os_version else self.os
        return "/".join(p for p in (head, self.architecture, self.variant) if p)
