"""Editing a layout's `index.json` entries (pure): a name that moves or is taken off, which
images stay untagged (`keep_untagged`, per repository), and the sync setting that says so."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from mirror.layout.index_file import (
    REF_NAME,
    UNTAGGED_AT,
    UNTAGGED_FROM,
    Retention,
    list_entry,
    remove_digest,
    remove_named,
)
from mirror.sync.config import ConfigError, parse_config


def _d(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


def entry(n: int, name: str | None = None) -> dict[str, Any]:
    """An index entry of the image `n`, named `name`."""
    out: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json"}
    out |= {"digest": _d(n), "size": n}
    if name is not None:
        out["annotations"] = {REF_NAME: name}
    return out


def names(entries: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    """(name or untagged-from, digest) of each entry, in order."""
    out = []
    for e in entries:
        annotations = e.get("annotations", {})
        out.append((annotations.get(REF_NAME) or annotations.get(UNTAGGED_FROM), e["digest"]))
    return out


def test_a_moved_name_takes_the_old_entrys_place_and_the_old_image_leaves() -> None:
    edited = list_entry([entry(1, "a:1"), entry(2, "a:2")], entry(3, "a:1"))
    assert names(edited.entries) == [("a:1", _d(3)), ("a:2", _d(2))]
    assert edited.departed == [entry(1, "a:1")]
    assert edited.unnamed == ["a:1"]


def test_an_image_named_elsewhere_is_never_kept_untagged() -> None:
    keep = Retention(default=5)
    edited = list_entry([entry(1, "a:1"), entry(1, "a:latest")], entry(2, "a:1"), keep, "t")
    assert names(edited.entries) == [("a:1", _d(2)), ("a:latest", _d(1))]
    assert [e["digest"] for e in edited.departed] == [_d(1)]


def test_the_newest_untagged_images_of_each_repository_stay() -> None:
    keep = Retention(default=0, per_repository={"a": 2, "b": 1})
    entries = [entry(9, "b:1")]
    for n, when in ((1, "t1"), (2, "t2"), (3, "t3"), (4, "t4")):
        entries = list_entry(entries, entry(n, "a:1"), keep, when).entries
    entries = list_entry(entries, entry(8, "b:1"), keep, "t5").entries
    assert names(entries) == [
        ("b:1", _d(8)),
        ("a:1", _d(4)),
        ("a:1", _d(2)),  # a keeps two: image 1, untagged first, left when image 3 was
        ("a:1", _d(3)),
        ("b:1", _d(9)),
    ]
    assert [e["annotations"][UNTAGGED_AT] for e in entries[2:]] == ["t3", "t4", "t5"]
    # b keeps one: its own, not one of a's
    assert names(list_entry(entries, entry(7, "b:1"), keep, "t6").entries)[-1] == ("b:1", _d(8))
    # taking a name off untags as well; a setting of 0 lets the repository's others go
    edited = remove_named(entries, "a:1", Retention(), "t7")
    assert names(edited.entries) == [("b:1", _d(8)), ("b:1", _d(9))]
    assert {e["digest"] for e in edited.departed} == {_d(2), _d(3), _d(4)}


def test_fallback_and_digest_tags_are_never_kept_untagged() -> None:
    fallback = "a:sha256-" + "1" * 64
    entries = [entry(1, "a:1"), entry(5, fallback), entry(6, f"{fallback}.sig")]
    edited = list_entry(entries, entry(7, f"{fallback}.sig"), Retention(default=3), "t")
    assert names(edited.entries) == [("a:1", _d(1)), (fallback, _d(5)), (f"{fallback}.sig", _d(7))]
    assert edited.departed == [entry(6, f"{fallback}.sig")]


def test_an_untagged_image_named_again_is_listed_once_and_a_plain_unnamed_one_stays() -> None:
    entries = list_entry([entry(1, "a:1"), entry(4)], entry(2, "a:1"), Retention(1), "t").entries
    assert names(entries) == [("a:1", _d(2)), (None, _d(4)), ("a:1", _d(1))]
    again = list_entry(entries, entry(1, "a:old"), Retention(0), "u").entries
    assert names(again) == [("a:1", _d(2)), (None, _d(4)), ("a:old", _d(1))]
    # an image listed under a name is not listed again unnamed
    assert list_entry(again, entry(2)).entries == again
    # an unnamed entry no one untagged is never counted as retention
    assert names(remove_named(again, "a:1", Retention(0), "v").entries)[0] == (None, _d(4))


def test_deleting_a_manifest_takes_every_entry_of_it() -> None:
    edited = remove_digest([entry(1, "a:1"), entry(2, "a:2"), entry(1, "a:3")], _d(1))
    assert names(edited.entries) == [("a:2", _d(2))]
    assert edited.unnamed == ["a:1", "a:3"]


def _config(defaults: str = "", job: str = "", destination: str = "oci:/b") -> str:
    return f"""
[defaults]
{defaults}
[[jobs]]
source = "src.example/team/app"
destination = "{destination}"
{job}
[[jobs]]
source = "src.example/team/other"
destination = "{destination}"
"""


def test_keep_untagged_is_a_default_a_job_may_override() -> None:
    jobs = parse_config(tomllib.loads(_config("keep_untagged = 3", "keep_untagged = 1")), {}).jobs
    assert [j.keep_untagged for j in jobs] == [1, 3]
    assert [j.keep_untagged for j in parse_config(tomllib.loads(_config()), {}).jobs] == [0, 0]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (_config("keep_untagged = -1"), "defaults.keep_untagged"),
        (_config(job='keep_untagged = "2"'), "jobs[0].keep_untagged"),
        (_config(job="keep_untagged = 2", destination="dst.example/up"), "jobs[0].keep_untagged"),
    ],
)
def test_a_bad_keep_untagged_is_refused_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(key)):
        parse_config(tomllib.loads(text), {})
