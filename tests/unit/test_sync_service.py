"""The service's parts without a registry: durations, the configuration watcher, health."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.support.timestamps import parse_duration
from mirror.sync.config import load_config
from mirror.sync.metrics import SyncMetrics
from mirror.sync.report import Status, SyncReport, TaskReport
from mirror.sync.service import ConfigWatcher, Health
from mirror.trust.policy import Policy, SigstoreSigned
from tests.support.signing import keyed, make_key, policy_file, write_public


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("15m", 900), ("1h30m", 5400), ("1d", 86400), ("500ms", 0.5)],
)
def test_durations_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "15 minutes", "m", "1h-5m", "-3s"])
def test_what_is_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None


def _write(path: Path, destination: str) -> None:
    path.write_text(f'[[jobs]]\nsource = "a.example/app"\ndestination = "{destination}"\n')


def test_a_broken_edit_is_said_once_and_the_last_good_configuration_kept(tmp_path: Path) -> None:
    path = tmp_path / "sync.toml"
    _write(path, "b.example/one")
    watcher = ConfigWatcher(path, load_config(path))
    assert watcher.current()[1] is None
    path.write_text("[[jobs]\nnot toml")
    config, problem = watcher.current()
    assert problem is not None
    assert "not valid TOML" in problem
    assert config.jobs[0].destination == "b.example/one"
    assert watcher.current() == (config, None)  # said once
    path.unlink()
    assert "cannot read" in (watcher.current()[1] or "")
    _write(path, "b.example/two")
    config, problem = watcher.current()
    assert problem is None
    assert config.jobs[0].destination == "b.example/two"


def test_a_key_taken_out_of_a_policy_is_out_from_the_next_run(tmp_path: Path) -> None:
    """The policies (the configuration's and a --policy given to the service) and the keys
    they name are read again before every run, not only when the TOML changes."""
    one = write_public(make_key("p256"), tmp_path / "one.pub")
    two = write_public(make_key("p256"), tmp_path / "two.pub")
    named = policy_file(tmp_path / "named.json", {"": keyed(one, two)})
    given = policy_file(tmp_path / "given.json", {"": keyed(one, two)})
    path = tmp_path / "sync.toml"
    path.write_text(f'[defaults]\npolicy = "{named}"\n' + path_job())
    watcher = ConfigWatcher(path, load_config(path), str(given))
    config, _ = watcher.current()
    assert config.policy is not None
    assert config.policy.path == str(given)
    assert _keys(config.policy) == 2
    policy_file(given, {"": keyed(one)})  # key two withdrawn, the TOML untouched
    config, problem = watcher.current()
    assert problem is None
    assert config.policy is not None
    assert _keys(config.policy) == 1
    watcher = ConfigWatcher(path, load_config(path))
    policy_file(named, {"": keyed(two)})
    config, _ = watcher.current()
    assert config.policy is not None
    assert config.policy.path == str(named)
    assert _keys(config.policy) == 1
    one.unlink()
    policy_file(named, {"": keyed(one)})  # a key file gone: said once, the last good kept
    config, problem = watcher.current()
    assert problem is not None
    assert "one.pub" in problem
    assert config.policy is not None
    assert _keys(config.policy) == 1
    assert watcher.current()[1] is None


def path_job() -> str:
    return '[[jobs]]\nsource = "a.example/app"\ndestination = "b.example/one"\n'


def _keys(policy: Policy) -> int:
    requirement = policy.docker[""][0]
    assert isinstance(requirement, SigstoreSigned)
    return len(requirement.keys)


def test_healthy_while_the_last_run_finished_within_two_intervals() -> None:
    now = [100.0]
    health = Health(10, clock=lambda: now[0])
    now[0] = 105.0
    health.ran()
    now[0] = 125.0
    assert health.healthy()
    assert health.describe().startswith("last run finished 20 s ago")
    now[0] = 126.0
    assert not health.healthy()
    health.ran()
    now[0] = 140.0
    assert health.healthy()


def test_before_the_first_run_ends_no_run_is_said_finished_and_it_has_one_interval() -> None:
    now = [100.0]
    health = Health(10, clock=lambda: now[0])
    now[0] = 101.0
    assert health.healthy()
    said = health.describe()
    assert "last run finished" not in said
    assert said.startswith("no run has finished yet; the first started 1 s ago")
    now[0] = 110.0
    assert health.healthy()  # the first run starts at once: it has one interval
    now[0] = 111.0
    assert not health.healthy()


def test_a_job_with_a_failed_image_has_no_new_success_time() -> None:
    metrics = SyncMetrics()
    report = SyncReport(
        [
            TaskReport("ok", "s", "d", Status.COPIED, bytes=10),
            TaskReport("bad", "s", "d", Status.FAILED, error="boom"),
        ],
        {"hub": {"remaining": 7}},
    )
    metrics.record_run(report, ["ok", "bad"], 1.5)
    text = metrics.exposition().decode()
    assert 'mirror_sync_last_success_timestamp_seconds{job="ok"}' in text
    assert 'job="bad"' in text  # counted among images ...
    assert 'mirror_sync_last_success_timestamp_seconds{job="bad"}' not in text  # ... not a success
    assert 'mirror_sync_copied_bytes_total{job="ok"} 10.0' in text
    assert 'mirror_registry_rate_limit_remaining{registry="hub"} 7.0' in text
    assert 'mirror_sync_runs_total{result="partial"} 1.0' in text
