"""`--policy FILE`: the signature policy a command admits images by (containers-policy.json).

The file is read when the option is parsed, so a policy that cannot be used is a usage
error naming the file and the field, before anything moves."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from mirror.trust.policy import Policy

__all__ = ["policy_option", "read_policy"]

F = TypeVar("F", bound=Callable[..., object])


def read_policy(ctx: click.Context, param: click.Parameter, value: str | None) -> Policy | None:
    """Click callback: the policy file read (None when not given), a usage error if unusable."""
    if value is None:
        return None
    from mirror.trust.policy import PolicyError, load_policy  # cryptography only when given

    try:
        return load_policy(value)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def policy_option(command: F) -> F:
    """The `--policy FILE` option, its value a `Policy` (or None)."""
    return click.option(
        "--policy",
        "policy",
        metavar="FILE",
        callback=read_policy,
        help="Admit only images this containers-policy.json accepts (sigstore signatures "
        "checked offline); the signatures travel with the image.",
    )(command)
