"""The records a sync keeps of its registry destinations: when one stands in for the HEADs,
when it does not, and what a damaged file or a run that dies half-way leaves."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from mirror.sync.plan import Action, PlannedImage, SyncPlan
from mirror.sync.record_run import withdraw_written
from mirror.sync.recorded import DAY, DestinationRecords, RepositoryRecord, listing_sum
from mirror.sync.survey import ImageTask, Repo

DIGEST = "sha256:" + "a" * 64
TAGS = frozenset({"v1", "v2"})


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _saved(path: Path, clock: Clock) -> None:
    records = DestinationRecords(path, clock=clock)
    records.record(
        "reg:5000", "team/app", RepositoryRecord(listing_sum(TAGS), clock(), {"v1": DIGEST})
    )
    await records.save()


def test_the_listing_checksum_ignores_order_and_sees_a_change() -> None:
    assert listing_sum(["b", "a"]) == listing_sum(["a", "b"])
    assert listing_sum(["a", "b"]) != listing_sum(["a", "b", "c"])
    assert listing_sum(["ab"]) != listing_sum(["a", "b"])


async def test_a_record_stands_in_only_for_the_same_listing_and_within_the_period(
    tmp_path: Path,
) -> None:
    clock = Clock()
    await _saved(tmp_path, clock)
    fresh = DestinationRecords(tmp_path, clock=clock)
    assert fresh.trusted("reg:5000", "team/app", ["v2", "v1"]).tags == {"v1": DIGEST}
    assert fresh.trusted("reg:5000", "team/app", ["v1"]).tags == {}  # a tag left
    assert fresh.trusted("reg:5000", "team/other", TAGS).tags == {}
    clock.now += 0.74 * DAY
    assert fresh.trusted("reg:5000", "team/app", TAGS).tags  # before any stagger
    clock.now += 0.26 * DAY
    assert fresh.trusted("reg:5000", "team/app", TAGS).tags == {}  # a day: compared again
    clock.now -= 0.5 * DAY
    forced = DestinationRecords(tmp_path, clock=clock, verify_now=True)
    assert forced.trusted("reg:5000", "team/app", TAGS).tags == {}
    always = DestinationRecords(tmp_path, clock=clock, verify_every=0)
    assert always.trusted("reg:5000", "team/app", TAGS).tags == {}


async def test_a_damaged_or_hostile_record_file_counts_as_empty(tmp_path: Path) -> None:
    clock = Clock()
    await _saved(tmp_path, clock)
    path = next(tmp_path.glob("*.json"))
    path.write_bytes(path.read_bytes()[:-5])
    assert (
        DestinationRecords(tmp_path, clock=clock).trusted("reg:5000", "team/app", TAGS).tags == {}
    )
    hostile = {
        "version": 1,
        "repositories": {
            "../../etc": {"listing": listing_sum(TAGS), "checked": clock(), "tags": {}},
            "team/app": {"listing": listing_sum(TAGS), "checked": clock(), "tags": {"v1": "x"}},
        },
    }
    path.write_text(json.dumps(hostile))
    records = DestinationRecords(tmp_path, clock=clock)
    assert records.trusted("reg:5000", "team/app", TAGS).tags == {}
    assert records.trusted("reg:5000", "../../etc", TAGS).tags == {}


async def test_saving_merges_with_what_another_process_saved(tmp_path: Path) -> None:
    clock = Clock()
    one = DestinationRecords(tmp_path, clock=clock)
    other = DestinationRecords(tmp_path, clock=clock)
    one.record("reg:5000", "a/x", RepositoryRecord(listing_sum(TAGS), clock(), {"v1": DIGEST}))
    other.record("reg:5000", "b/y", RepositoryRecord(listing_sum(TAGS), clock(), {"v2": DIGEST}))
    await one.save()
    await other.save()
    both = DestinationRecords(tmp_path, clock=clock)
    assert both.trusted("reg:5000", "a/x", TAGS).tags == {"v1": DIGEST}
    assert both.trusted("reg:5000", "b/y", TAGS).tags == {"v2": DIGEST}


async def test_a_run_withdraws_the_records_it_will_write_to_before_it_writes(
    tmp_path: Path,
) -> None:
    clock = Clock()
    await _saved(tmp_path, clock)
    destination = Repo("docker://reg:5000", "team/app")
    task = ImageTask("j", Repo("docker://src:5000", "team/app"), destination, "v1")
    plan = SyncPlan((PlannedImage(task, Action.COPY),), ())
    await withdraw_written(DestinationRecords(tmp_path, clock=clock), plan)
    # the run dies here: nothing it may have half-written is trusted by the next one
    assert (
        DestinationRecords(tmp_path, clock=clock).trusted("reg:5000", "team/app", TAGS).tags == {}
    )


async def test_records_that_cannot_be_kept_are_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    await _saved(tmp_path / "state", clock)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    records = DestinationRecords(blocked / "sync-destinations", clock=clock)
    records.record("reg:5000", "team/app", RepositoryRecord(listing_sum(TAGS), clock(), {}))
    await records.save()  # a read-only or odd state folder: the run goes on
    assert "cannot keep sync records" in caplog.text
    assert records.trusted("reg:5000", "team/app", TAGS).tags == {}
    # a full disk: what is there is taken away, so no record outlives a write it missed
    full = DestinationRecords(tmp_path / "state", clock=clock)
    assert full.trusted("reg:5000", "team/app", TAGS).tags
    full.record("reg:5000", "team/app", RepositoryRecord("", 0.0, {}))

    def no_space(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mirror.support.statefile.write_atomic", no_space)
    await full.save()
    after = DestinationRecords(tmp_path / "state", clock=clock)
    assert after.trusted("reg:5000", "team/app", TAGS).tags == {}
