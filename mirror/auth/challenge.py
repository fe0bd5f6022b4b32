"""Parsing `WWW-Authenticate` challenges (RFC 7235) as registries send them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_challenges"]

_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TCHAR})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
_SCHEME_RE = re.compile(rf"\s*({_TCHAR})(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    """One challenge: its scheme (lower-case) and parameters (`realm`, `service`, `scope`)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str | None:
        """Where to ask for a token (Bearer) or the realm name (Basic)."""
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        """The `service` a token is asked for."""
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        """Scopes named by the challenge (space separated; a scope may contain `host:port`)."""
        return self.params.get("scope", "").split()


def parse_challenges(header: str) -> list[Challenge]:
    """Parse every challenge in a `WWW-Authenticate` header; quoted and bare values alike."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME_RE.match(header, pos)
        if not scheme:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while pos < len(header):
            param = _PARAM_RE.match(header, pos)
            if not param:
                break
            # a token followed by whitespace and another token starts the next challenge
            name, quoted, bare = param.group(1), param.group(2), param.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
            params[name.lower()] = value
            pos = param.end()
        out.append(Challenge(scheme.group(1).lower(), params))
        while pos < len(header) and header[pos] in ", ":
            pos += 1
    return out
