"""The public surface is small, sorted and complete; the error tree is as documented."""

from __future__ import annotations

import mirror
from mirror import errors


def test_all_is_sorted_and_importable() -> None:
    assert list(mirror.__all__) == sorted(mirror.__all__)
    for name in mirror.__all__:
        assert hasattr(mirror, name), name


def test_every_error_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name
        assert issubclass(getattr(errors, name), errors.MirrorError)


def test_error_tree_shape() -> None:
    assert issubclass(errors.ManifestNotFound, LookupError)
    assert issubclass(errors.InvalidReference, ValueError)
    assert issubclass(errors.DigestMismatch, errors.ContentError)
    assert errors.TransportError.retryable
    limited = errors.RateLimited("slow", retry_after=3.0, status=429)
    assert (limited.retryable, limited.retry_after, limited.status) == (True, 3.0, 429)
