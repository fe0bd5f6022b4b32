"""The sync planner is pure: what a run copies, skips and deletes, decided from a survey alone."""

from __future__ import annotations

import tomllib

from mirror.sync.config import SyncConfig, parse_config
from mirror.sync.plan import Action, make_plan
from mirror.sync.survey import Repo, RepositorySurvey, Survey

SOURCE = Repo("docker://src.example", "team/app")
DESTINATION = Repo("docker://dst.example/up", "team/app")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def config(extra: str = "", job: str = "") -> SyncConfig:
    text = f"""
{extra}
[[jobs]]
source = "src.example/team/app"
destination = "dst.example/up"
{job}
"""
    return parse_config(tomllib.loads(text), {})


def survey_of(
    cfg: SyncConfig,
    chosen: tuple[str, ...],
    present: dict[str, frozenset[str]] | None = None,
    heads: dict[str, tuple[str | None, str | None]] | None = None,
) -> Survey:
    return Survey(
        [RepositorySurvey(cfg.jobs[0], SOURCE, DESTINATION, chosen)], present or {}, heads or {}
    )


def test_an_image_both_sides_hold_at_one_digest_is_skipped_and_others_copied() -> None:
    cfg = config()
    found = survey_of(
        cfg,
        ("v1", "v2", "v3"),
        present={str(DESTINATION): frozenset({"v1", "v2"})},
        heads={DESTINATION.image("v1"): (D1, D1), DESTINATION.image("v2"): (D1, D2)},
    )
    plan = make_plan(cfg, found)
    decided = {i.task.tag: (i.action, i.digest) for i in plan.images}
    assert decided == {
        "v1": (Action.SKIP, D1),
        "v2": (Action.COPY, ""),
        "v3": (Action.COPY, ""),
    }
    assert plan.images[0].task.source_text == "docker://src.example/team/app:v1"
    assert plan.images[0].task.destination_text == "docker://dst.example/up/team/app:v1"
    assert plan.deletions == ()


def test_with_platforms_the_filtered_digest_decides_like_any_other() -> None:
    """The survey compares what a filtered copy writes (not the source index's digest)."""
    cfg = config('[defaults]\nplatforms = ["linux/amd64"]')
    same = survey_of(cfg, ("v1",), heads={DESTINATION.image("v1"): (D1, D1)})
    assert [i.action for i in make_plan(cfg, same).images] == [Action.SKIP]
    other = survey_of(cfg, ("v1",), heads={DESTINATION.image("v1"): (D1, D2)})
    assert [i.action for i in make_plan(cfg, other).images] == [Action.COPY]


def test_fallback_and_digest_tags_are_never_deleted_on_their_own() -> None:
    cfg = config(job="delete = true")
    fallback = "sha256-" + "1" * 64
    present = frozenset({"v1", "old", fallback, f"{fallback}.sig"})
    found = survey_of(cfg, ("v1",), present={str(DESTINATION): present})
    assert [d.tag for d in make_plan(cfg, found).deletions] == ["old"]


def test_deletions_are_the_listed_tags_the_job_no_longer_chooses() -> None:
    cfg = config(job="delete = true")
    found = survey_of(cfg, ("v2",), present={str(DESTINATION): frozenset({"v1", "v2", "old"})})
    assert [(d.repository.image(d.tag)) for d in make_plan(cfg, found).deletions] == [
        "docker://dst.example/up/team/app:old",
        "docker://dst.example/up/team/app:v1",
    ]
    unlisted = survey_of(cfg, ("v2",))
    assert make_plan(cfg, unlisted).deletions == ()
    keeping = config()
    found = survey_of(keeping, ("v2",), present={str(DESTINATION): frozenset({"v1"})})
    assert make_plan(keeping, found).deletions == ()


def test_layout_repositories_name_images_inside_the_layout() -> None:
    repo = Repo("oci:/backup", "team/app")
    assert repo.image("v1") == "oci:/backup:team/app:v1"
    assert repo.image(digest=D1) == f"oci:/backup:team/app@{D1}"
