"""signedIdentity as containers/image matches it (signature/policy_reference_match.go)."""

from __future__ import annotations

import pytest

from mirror.oci.reference import parse_registry_reference
from mirror.trust.identity import (
    ExactReference,
    ExactRepository,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
    SignedIdentity,
    prefix_matches,
)

D = "sha256:" + "a" * 64
E = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("rule", "image", "signed", "admits"),
    [
        # the default: by tag, exactly; by digest, the repository; never a bare repository
        (MatchRepoDigestOrExact(), "r.io/a:v1", "r.io/a:v1", True),
        (MatchRepoDigestOrExact(), "r.io/a:v1", "r.io/a:v2", False),
        (MatchRepoDigestOrExact(), "r.io/a:v1", "r.io/a", False),
        (MatchRepoDigestOrExact(), f"r.io/a@{D}", "r.io/a:v9", True),
        (MatchRepoDigestOrExact(), f"r.io/a@{D}", f"r.io/a@{E}", True),
        (MatchRepoDigestOrExact(), f"r.io/a@{D}", "r.io/a", False),
        (MatchRepoDigestOrExact(), f"r.io/a@{D}", "r.io/b:v1", False),
        (MatchRepoDigestOrExact(), "busybox:1", "docker.io/library/busybox:1", True),
        (MatchExact(), "r.io/a:v1", "r.io/a:v1", True),
        (MatchExact(), f"r.io/a@{D}", f"r.io/a@{D}", True),
        (MatchExact(), f"r.io/a@{D}", "r.io/a:v1", False),
        (MatchExact(), "r.io/a:v1", "r.io/a", False),
        (MatchRepository(), "r.io/a:v1", "r.io/a", True),
        (MatchRepository(), "r.io/a:v1", "r.io/a:other", True),
        (MatchRepository(), "r.io/a:v1", "r.io/b", False),
        (ExactReference("q.io/x:1"), "r.io/a:v1", "q.io/x:1", True),
        (ExactReference("q.io/x:1"), "r.io/a:v1", "q.io/x:2", False),
        (ExactRepository("q.io/x"), "r.io/a:v1", "q.io/x:anything", True),
        (ExactRepository("q.io/x"), "r.io/a:v1", "q.io/y", False),
        (RemapIdentity("m.io/mirror", "up.io"), "m.io/mirror/app:v1", "up.io/app:v1", True),
        (RemapIdentity("m.io/mirror", "up.io"), "m.io/mirror/app:v1", "up.io/app", False),
        (RemapIdentity("m.io/mirror", "up.io"), f"m.io/mirror/app@{D}", "up.io/app:x", True),
        (RemapIdentity("m.io/mirror", "up.io"), "m.io/mirror/app:v1", "m.io/mirror/app:v1", False),
        (RemapIdentity("m.io/mirror", "up.io"), "m.io/mirrorx/app:v1", "m.io/mirrorx/app:v1", True),
        (MatchRepository(), "r.io/a:v1", "not a reference!", False),
    ],
)
def test_signed_identity(rule: SignedIdentity, image: str, signed: str, admits: bool) -> None:
    assert rule.matches(parse_registry_reference(image), signed) is admits


def test_an_image_not_read_from_a_registry_matches_only_the_fixed_identities() -> None:
    assert not MatchRepository().matches(None, "r.io/a")
    assert not MatchRepoDigestOrExact().matches(None, "r.io/a:v1")
    assert ExactRepository("r.io/a").matches(None, "r.io/a:v1")


def test_prefixes_end_at_a_separator() -> None:
    assert prefix_matches("m.io/mirror/app:v1", "m.io/mirror")
    assert prefix_matches("m.io/mirror", "m.io/mirror")
    assert not prefix_matches("m.io/mirrorx/app", "m.io/mirror")
    assert prefix_matches("m.io:5000/a", "m.io")
    assert not prefix_matches("m.io", "m.io/mirror")


def test_the_default_says_why_cosign_identities_do_not_match() -> None:
    assert "matchRepository does" in MatchRepoDigestOrExact().describe()
