"""Endpoint arguments of the command line: parsed, and a path or a transport without its
colon where an endpoint belongs refused in one usage line that says what was meant (`'./x'
is a path, not an endpoint: did you mean oci:./x?`), before anything is asked of a registry.
"""

from __future__ import annotations

import os

import click

from mirror.errors import InvalidReference
from mirror.oci.reference import TRANSPORTS, Reference, endpoint_hint, parse_reference

__all__ = ["local_hint", "parse_endpoint"]


def _has_transport(text: str) -> bool:
    return "://" in text or text.startswith(tuple(f"{t}:" for t in TRANSPORTS))


def local_hint(text: str) -> str | None:
    """Why a bare `text` is not meant for a registry: its spelling (`endpoint_hint`), or a
    directory or file here named by it or by its part before the first `:` (`backup:1.0`
    with `./backup` a layout); None when nothing says so."""
    if _has_transport(text):
        return None
    hint = endpoint_hint(text)
    if hint is not None:
        return hint
    name = text.partition(":")[0]
    if name and os.path.isdir(name):
        return f"{text!r} names a directory here, not an endpoint: did you mean oci:{text}?"
    if name and os.path.isfile(name):
        return (
            f"{text!r} names a file here, not an endpoint: "
            f"did you mean oci-archive:{text} or docker-archive:{text}?"
        )
    return None


def parse_endpoint(
    text: str, what: str, *, registry: bool = False, hints: bool = True
) -> Reference:
    """The reference `text` names, for the argument `what`; a usage error (exit 2) in one
    line when it cannot be parsed or (`hints`) is a local path. `registry`: a bare name is a
    registry image (`HOST/REPO[:TAG]`), as `inspect`, `tags`, `pull` and `push` take it."""
    hint = local_hint(text) if hints else None
    if hint is not None:
        raise click.BadParameter(hint, param_hint=what)
    try:
        return parse_reference(text if not registry or _has_transport(text) else f"docker://{text}")
    except InvalidReference as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None
