"""`copy --policy`: images signed in cosign's formats, in the tests, against the real registry.

Each refusal is one line naming the image and the reason, exit 1, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mirror
from mirror.oci.model import Index
from mirror.trust.policy import Policy, load_policy
from tests.support.registry import Registry
from tests.support.signed_images import (
    copy_refused,
    holds_repository,
    push_signed,
    pushed_image,
    repository,
)
from tests.support.signing import (
    keyed,
    make_key,
    payload,
    policy_file,
    signed,
    signed_payload,
    write_public,
)
from tests.support.tools import amirror


async def _signed_image(
    registry: Registry, name: str, tmp_path: Path, *, key_kind: str = "p256", identity: str = ""
) -> tuple[str, Path, object]:
    """An image `name:v1` signed by a new key as `identity` (default: `host/name:v1`); its
    digest, the public key file, and the private key."""
    digest = await pushed_image(registry, name, tmp_path, name)
    key = make_key(key_kind)
    identity = identity or f"{registry.host}/{name}:v1"
    await push_signed(registry.host, name, digest, [signed(key, digest, identity)])
    return digest, write_public(key, tmp_path / f"{name.replace('/', '_')}.pub"), key


async def _across(
    registry: Registry,
    second_registry: Registry,
    name: str,
    policy: Policy,
    *,
    tag: str = "v1",
    platforms: tuple[str, ...] = (),
) -> mirror.CopyResult:
    """`mirror.copy` of `name:v1` from the registry to `name:TAG` of the second, judged by
    `policy`."""
    return await mirror.copy(
        f"docker://{registry.host}/{name}:v1",
        f"docker://{second_registry.host}/{name}:{tag}",
        platforms=platforms,
        policy=policy,
    )


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa", "ed25519"])
async def test_signed_by_a_trusted_key_is_copied_with_its_signature(
    registry: Registry, second_registry: Registry, tmp_path: Path, kind: str
) -> None:
    name = f"trust/keyed-{kind}"
    digest, pub, _ = await _signed_image(registry, name, tmp_path, key_kind=kind)
    policy = policy_file(tmp_path / "policy.json", {registry.host: keyed(pub)})
    done = await amirror(
        "--json",
        "copy",
        "--policy",
        str(policy),
        f"docker://{registry.host}/{name}:v1",
        f"docker://{second_registry.host}/{name}:v1",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["digest"] == digest
    assert report["admittedBy"]["by"].startswith("key SHA256:")
    assert report["admittedBy"]["scope"] == registry.host
    tags = await mirror.list_tags(f"docker://{second_registry.host}/{name}")
    assert f"sha256-{digest.split(':')[1]}.sig" in tags  # the signature travelled


async def test_signed_by_another_key_is_refused_and_nothing_is_written(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    name = "trust/other-key"
    await _signed_image(registry, name, tmp_path)
    stranger = write_public(make_key(), tmp_path / "stranger.pub")
    policy = policy_file(tmp_path / "policy.json", {registry.host: keyed(stranger)})
    line = await copy_refused(
        policy, f"docker://{registry.host}/{name}:v1", f"docker://{second_registry.host}/{name}:v1"
    )
    assert line.startswith(f"mirror: error: docker://{registry.host}/{name}:v1: refused")
    assert "signed by a key the policy does not trust" in line
    assert not holds_repository(second_registry, name)


async def test_a_payload_naming_another_digest_is_refused(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    name = "trust/other-digest"
    digest = await pushed_image(registry, name, tmp_path, name)
    other = await pushed_image(registry, "trust/elsewhere", tmp_path, "elsewhere")
    key = make_key()
    await push_signed(
        registry.host, name, digest, [signed(key, other, f"{registry.host}/{name}:v1")]
    )
    policy = load_policy(
        policy_file(tmp_path / "p.json", {registry.host: keyed(write_public(key, tmp_path / "k"))})
    )
    with pytest.raises(mirror.Refused, match=r"payload names another digest \(sha256:"):
        await _across(registry, second_registry, name, policy)
    assert not holds_repository(second_registry, name)


async def test_identity_of_another_repository_is_refused_then_admitted_by_remap_identity(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """A mirror renamed the repository: the signature names the upstream one."""
    name = "mirrored/app"
    digest, pub, _ = await _signed_image(
        registry, name, tmp_path, identity="upstream.example.com/team/app:v1"
    )
    strict = keyed(pub, identity={"type": "matchRepository"})
    refused = load_policy(policy_file(tmp_path / "strict.json", {registry.host: strict}))
    with pytest.raises(mirror.Refused, match="does not match under matchRepository"):
        await _across(registry, second_registry, name, refused)
    remap = {
        "type": "remapIdentity",
        "prefix": f"{registry.host}/mirrored",
        "signedPrefix": "upstream.example.com/team",
    }
    # remapIdentity then matches as matchRepoDigestOrExact: by tag, the same remapped tag
    admitted = load_policy(
        policy_file(tmp_path / "remap.json", {registry.host: keyed(pub, identity=remap)})
    )
    result = await _across(registry, second_registry, name, admitted)
    assert result.admitted is not None
    assert result.admitted.digest == digest


async def test_cosign_usual_identity_needs_match_repository(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """cosign signs `host/repo` (no tag): the default matchRepoDigestOrExact refuses it for an
    image named by tag, and the refusal says matchRepository admits it."""
    name = "trust/usual"
    _, pub, _ = await _signed_image(registry, name, tmp_path, identity=f"{registry.host}/{name}")
    default = load_policy(policy_file(tmp_path / "d.json", {registry.host: keyed(pub)}))
    with pytest.raises(mirror.Refused, match="matchRepository does") as refused:
        await _across(registry, second_registry, name, default)
    assert "matchRepoDigestOrExact" in str(refused.value)
    repo_rule = keyed(pub, identity={"type": "matchRepository"})
    ok = load_policy(policy_file(tmp_path / "r.json", {registry.host: repo_rule}))
    result = await _across(registry, second_registry, name, ok)
    assert result.admitted is not None


async def test_unsigned_under_a_reject_default_and_under_sigstore_signed_are_refused(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    name = "trust/unsigned"
    await pushed_image(registry, name, tmp_path, name)
    src, dst = f"docker://{registry.host}/{name}:v1", f"docker://{second_registry.host}/{name}"
    elsewhere = {"other.example.com": [{"type": "insecureAcceptAnything"}]}
    rejecting = load_policy(policy_file(tmp_path / "reject.json", elsewhere))
    with pytest.raises(mirror.Refused, match=r"scope default\): the policy rejects every image"):
        await mirror.copy(src, dst, policy=rejecting)
    pub = write_public(make_key(), tmp_path / "k.pub")
    wanting = load_policy(policy_file(tmp_path / "want.json", {registry.host: keyed(pub)}))
    with pytest.raises(mirror.Refused, match=r": no signature$"):
        await mirror.copy(src, dst, policy=wanting)
    assert not holds_repository(second_registry, name)


async def test_an_insecure_accept_anything_scope_copies(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    name = "trust/open/app"
    await pushed_image(registry, name, tmp_path, name)
    accepting = {f"{registry.host}/trust/open": [{"type": "insecureAcceptAnything"}]}
    policy = load_policy(policy_file(tmp_path / "open.json", accepting))
    result = await _across(registry, second_registry, name, policy)
    assert result.admitted is not None
    assert result.admitted.to_json() == {
        "scope": f"{registry.host}/trust/open",
        "by": "insecureAcceptAnything",
    }


async def test_two_signatures_one_good_is_admitted(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    name = "trust/two"
    digest = await pushed_image(registry, name, tmp_path, name)
    good, bad = make_key("p384"), make_key("rsa")
    identity = f"{registry.host}/{name}:v1"
    both = [signed(bad, digest, identity), signed(good, digest, identity)]
    await push_signed(registry.host, name, digest, both)
    pub = write_public(good, tmp_path / "good.pub")
    policy = load_policy(policy_file(tmp_path / "p.json", {registry.host: keyed(pub)}))
    result = await _across(registry, second_registry, name, policy)
    assert result.admitted is not None
    assert result.admitted.by.startswith("key SHA256:")


async def test_an_index_is_admitted_by_its_signature_or_the_chosen_platform_manifest(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    name = "trust/multi"
    registry.push_fixture("multi-arch", name)
    async with repository(registry.host, name) as repo:
        top = await repo.manifest_get("v1")
    assert isinstance(top, Index)
    arm = str(next(c.digest for c in top.manifests if "arm64" in str(c.platform)))
    key = make_key()
    pub = write_public(key, tmp_path / "k.pub")
    rule = keyed(pub, identity={"type": "matchRepository"})
    policy = load_policy(policy_file(tmp_path / "p.json", {registry.host: rule}))
    # the arm64 manifest alone signed
    await push_signed(registry.host, name, arm, [signed(key, arm, f"{registry.host}/{name}")])
    with pytest.raises(mirror.Refused, match="no signature"):
        await _across(registry, second_registry, name, policy, tag="all")
    chosen = await _across(
        registry, second_registry, name, policy, tag="arm", platforms=("linux/arm64/v8",)
    )
    assert chosen.admitted is not None
    assert chosen.admitted.digest == arm
    index_signature = signed(key, str(top.digest), f"{registry.host}/{name}")
    await push_signed(registry.host, name, str(top.digest), [index_signature])  # now the index
    whole = await _across(registry, second_registry, name, policy, tag="all")
    assert whole.admitted is not None
    assert whole.admitted.digest == str(top.digest)


async def test_rsa_pss_and_a_p384_key_verify_over_sha256(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """containers/image hashes with SHA-256 whatever the key; RSA as PKCS#1 v1.5 or PSS."""
    name = "trust/pss"
    digest = await pushed_image(registry, name, tmp_path, name)
    key = make_key("rsa")
    layer = signed_payload(key, payload(digest, f"{registry.host}/{name}:v1"), pss=True)
    await push_signed(registry.host, name, digest, [layer])
    policy = load_policy(
        policy_file(tmp_path / "p.json", {registry.host: keyed(write_public(key, tmp_path / "k"))})
    )
    result = await _across(registry, second_registry, name, policy)
    assert result.admitted is not None


async def test_a_policy_mirror_cannot_use_is_one_usage_line_naming_the_file_and_the_field(
    tmp_path: Path,
) -> None:
    gpg = tmp_path / "gpg.json"
    gpg.write_text(
        json.dumps({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]})
    )
    for command in (["copy", "docker://r.example.com/a:1", "oci:out"], ["sync", "x.toml"]):
        done = await amirror(*command, "--policy", str(gpg))
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert f"policy {gpg}: default[0].type: signedBy (GPG signatures) is not supported" in line
    assert not (tmp_path / "out").exists()


async def test_pull_and_push_take_the_policy_too(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """pull judges the registry image; push, an image read from a layout, is judged by the
    default requirements (a layout is no docker reference: exactRepository names one)."""
    name = "trust/pulled"
    digest, pub, _ = await _signed_image(registry, name, tmp_path)
    rule = keyed(
        pub, identity={"type": "exactRepository", "dockerRepository": f"{registry.host}/{name}"}
    )
    policy = policy_file(tmp_path / "p.json", {registry.host: keyed(pub)}, default=rule)
    layout = tmp_path / "pulled"
    pulled = await amirror(
        "--json", "pull", "--policy", str(policy), f"{registry.host}/{name}:v1", str(layout)
    )
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["admittedBy"]["scope"] == registry.host
    pushed = await amirror(
        "--json",
        "push",
        "--policy",
        str(policy),
        f"{layout}:v1",
        f"{second_registry.host}/{name}:v1",
    )
    assert pushed.returncode == 0, pushed.stderr
    report = json.loads(pushed.stdout)
    assert report["digest"] == digest
    assert report["admittedBy"]["scope"] == "default"
    strict = policy_file(tmp_path / "strict.json", {}, default=keyed(pub))
    refused = await amirror(
        "push", "--policy", str(strict), f"{layout}:v1", f"{second_registry.host}/{name}:v2"
    )
    assert refused.returncode == 1
    assert "does not match under matchRepoDigestOrExact" in refused.stderr


async def test_an_image_named_by_tag_and_digest_is_judged_by_both(
    registry: Registry, second_registry: Registry, tmp_path: Path
) -> None:
    """As containers/image: `repo:tag@digest` is a tagged reference, matched exactly by
    matchRepoDigestOrExact; `repo@digest` needs only the same repository."""
    name = "trust/pinned"
    digest, pub, _ = await _signed_image(registry, name, tmp_path)  # signed as name:v1
    policy = load_policy(policy_file(tmp_path / "p.json", {registry.host: keyed(pub)}))
    with pytest.raises(mirror.Refused, match="does not match under matchRepoDigestOrExact"):
        await mirror.copy(
            f"docker://{registry.host}/{name}:v1@{digest}",
            f"oci:{tmp_path / 'both'}:img",
            policy=policy,
        )
    by_digest = await mirror.copy(
        f"docker://{registry.host}/{name}@{digest}", f"oci:{tmp_path / 'one'}:img", policy=policy
    )
    assert by_digest.admitted is not None
