"""Parsing endpoint references the way skopeo spells them."""

from __future__ import annotations

import pytest

from mirror.errors import InvalidReference
from mirror.oci.reference import (
    ArchiveReference,
    DockerArchiveReference,
    LayoutReference,
    Reference,
    RegistryReference,
    parse_reference,
    repo_tag,
)

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("docker://localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("docker://alpine", "docker.io", "library/alpine", None, None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("docker.io/alpine", "docker.io", "library/alpine", None, None),
        ("index.docker.io/user/app", "docker.io", "user/app", None, None),
        ("user/app:latest", "docker.io", "user/app", "latest", None),
        (f"ghcr.io/org/team/app@{D}", "ghcr.io", "org/team/app", None, D),
        (f"127.0.0.1:5000/a/b:t@{D}", "127.0.0.1:5000", "a/b", "t", D),
        ("localhost/app", "localhost", "app", None, None),
        ("[::1]:5000/app:v", "[::1]:5000", "app", "v", None),
        ("Registry.Example.com/app", "registry.example.com", "app", None, None),
    ],
)
def test_registry_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert isinstance(ref, RegistryReference)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert parse_reference(str(ref)) == ref


def test_docker_hub_api_host_and_default_tag() -> None:
    ref = parse_reference("alpine")
    assert isinstance(ref, RegistryReference)
    assert ref.api_host == "registry-1.docker.io"
    assert ref.reference == "latest"
    assert str(ref) == "docker://docker.io/library/alpine"
    pinned = parse_reference(f"quay.io/x/y:1@{D}")
    assert isinstance(pinned, RegistryReference)
    assert pinned.api_host == "quay.io"
    assert pinned.reference == D


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci:/tmp/layout", LayoutReference("/tmp/layout", None)),
        ("oci:/tmp/layout:v1", LayoutReference("/tmp/layout", "v1")),
        ("oci:rel/dir:example.com/app:1.0", LayoutReference("rel/dir", "example.com/app:1.0")),
        ("oci-archive:/tmp/a.tar:latest", ArchiveReference("/tmp/a.tar", "latest")),
        ("oci-archive:a.tar.zst", ArchiveReference("a.tar.zst", None)),
        ("docker-archive:a.tar", DockerArchiveReference("a.tar", None)),
        ("docker-archive:a.tar:app:1.0", DockerArchiveReference("a.tar", "app:1.0")),
        ("docker-archive:/x/a.tar:@2", DockerArchiveReference("/x/a.tar", "@2")),
        (
            "docker-archive:a.tar:host:5000/team/app:1",
            DockerArchiveReference("a.tar", "host:5000/team/app:1"),
        ),
    ],
)
def test_file_references(text: str, expected: Reference) -> None:
    ref = parse_reference(text)
    assert ref == expected
    assert type(ref) is type(expected)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("docker://Foo/bar:1", "must be lower-case"),
        ("docker://exa_mple.com/app", "registry host"),
        ("docker://example.com/Bar", "must be lower-case"),
        ("docker://example.com/app:bad/tag:x", "repository"),
        ("docker://example.com/app:-tag", "tag '-tag'"),
        ("docker://example.com/app@sha256:../../x", "lower-case hex"),
        ("docker://example.com/app@md5:abc", "unsupported algorithm"),
        ("docker://example.com/", "missing repository"),
        ("docker:example.com/app", "docker://"),
        ("oci:", "needs a path"),
        ("oci:/x:bad ref!", "image name"),
        ("docker-archive:", "needs a path"),
        ("docker-archive:a.tar:@x", "@N needs a number"),
        ("docker-archive:a.tar:app@sha256:" + "a" * 64, "NAME:TAG"),
        ("dir:/tmp/x", "transport 'dir'"),
        ("", "empty"),
        ("example.com/a__-b", "invalid"),
    ],
)
def test_bad_references_name_the_part(text: str, names: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert names in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker://docker.io/library/alpine:3", "alpine:3"),
        ("docker://docker.io/team/app:1", "team/app:1"),
        ("docker://host:5000/team/app:1", "host:5000/team/app:1"),
        (f"docker://host:5000/team/app@{D}", None),
    ],
)
def test_the_repo_tag_docker_save_would_write(text: str, expected: str | None) -> None:
    ref = parse_reference(text)
    assert isinstance(ref, RegistryReference)
    assert repo_tag(ref) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("127.0.0.1:33807", "127.0.0.1:33807 is a registry, not a repository"),
        ("docker://localhost:5000", "localhost:5000/REPOSITORY"),
        ("localhost", "localhost is a registry"),
        ("[::1]:5000", "[::1]:5000 is a registry"),
        ("10.0.0.7", "10.0.0.7/REPOSITORY"),
        ("./backup", "did you mean oci:./backup?"),
        ("/srv/backup:v1", "did you mean oci:/srv/backup:v1?"),
        ("oci", "did you mean oci:DIR?"),
        ("oci./x:1", "did you mean oci:./x:1?"),
        ("oci/tmp/x", "did you mean oci:/tmp/x?"),
        ("oci-archive./a.tar", "did you mean oci-archive:./a.tar?"),
        ("docker-archive", "did you mean docker-archive:FILE?"),
    ],
)
def test_a_host_alone_a_path_or_a_transport_without_its_colon(text: str, says: str) -> None:
    """Each went to Docker Hub (`docker.io/library/127.0.0.1`, tag 33807)."""
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert says in str(info.value)


@pytest.mark.parametrize(
    "text", ["oci.example.com/app:1", "ocifoo/app", "alpine:3", "localhost.example.com/a"]
)
def test_names_like_those_still_name_registries(text: str) -> None:
    assert isinstance(parse_reference(text), RegistryReference)
