"""The state file (atomic, per endpoint) and its lock; the one rule of waiting."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from datarobot.errors import AsyncProcessUnsuccessfulError, AsyncTimeoutError

from drtool.errors import ConfigError, LockedError, RemoteError, WaitTimeout
from drtool.release import waiting
from drtool.release.state import StateLock, load_state, recorded_deployment_id
from drtool.release.waiting import Deadline, sdk_wait, wait_for
from drtool.settings import default_settings, load_settings

EP = "https://dr.test/api/v2"


# --- the state file -----------------------------------------------------------


def test_records_are_written_at_once_and_read_back(tmp_path):
    path = tmp_path / ".drtool-state.json"
    state = load_state(path, EP)

    state.record("environment", id="E1", name="env")
    state.update("environment", note="x")

    again = load_state(path, EP)
    assert again.get("environment") == {"id": "E1", "name": "env", "note": "x"}
    document = json.loads(path.read_text())
    assert document["format"] == 1
    assert document["endpoint"] == EP
    assert [p.name for p in tmp_path.iterdir()] == [".drtool-state.json"]


def test_an_unchanged_record_does_not_rewrite_the_file(tmp_path):
    path = tmp_path / ".drtool-state.json"
    state = load_state(path, EP)
    state.record("model", id="M1")
    path.write_text(path.read_text().replace('"updated"', '"updated_"'))

    state.record("model", id="M1")

    assert '"updated_"' in path.read_text()


def test_records_for_another_endpoint_are_set_aside(tmp_path, caplog):
    path = tmp_path / ".drtool-state.json"
    load_state(path, "https://other.test/api/v2").record("model", id="M1")

    with caplog.at_level(logging.WARNING):
        state = load_state(path, EP)

    assert state.objects == {}
    assert "records objects on https://other.test/api/v2" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a drtool state file"),
        ('{"format": 99}', "has format 99"),
    ],
)
def test_a_damaged_state_file_says_what_to_do(tmp_path, text, message):
    path = tmp_path / ".drtool-state.json"
    path.write_text(text)

    with pytest.raises(ConfigError, match=message) as damaged:
        load_state(path, EP)
    assert "delete it to start afresh" in str(damaged.value)


def test_the_released_deployment_is_readable_by_other_commands(tmp_path):
    (tmp_path / "config.yaml").write_text("")
    settings = load_settings(tmp_path / "config.yaml")
    assert recorded_deployment_id(settings) == ""

    load_state(settings.state_file, EP).record("deployment", id="D9")

    assert recorded_deployment_id(settings) == "D9"


# --- the lock -----------------------------------------------------------------


def test_a_held_lock_refuses_a_second_holder(tmp_path):
    path = tmp_path / ".drtool-state.json"
    with StateLock(path), pytest.raises(LockedError) as locked:
        StateLock(path).acquire()

    assert f"process {os.getpid()} on {socket.gethostname()}" in str(locked.value)
    assert not Path(f"{path}.lock").exists()


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path):
    path = tmp_path / ".drtool-state.json"
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = {"pid": int(finished.stdout), "host": socket.gethostname(), "started": "x"}
    Path(f"{path}.lock").write_text(json.dumps(dead))

    with StateLock(path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_lock_from_another_host_is_never_assumed_stale(tmp_path):
    path = tmp_path / ".drtool-state.json"
    other = {"pid": 1, "host": "another-host", "started": "x"}
    Path(f"{path}.lock").write_text(json.dumps(other))

    with pytest.raises(LockedError, match="another-host"):
        StateLock(path).acquire()


def test_releasing_leaves_a_lock_taken_over_by_someone_else(tmp_path):
    path = tmp_path / ".drtool-state.json"
    lock = StateLock(path)
    lock.acquire()
    lock.path.write_text(json.dumps({"pid": 1, "host": "x", "started": "y"}))

    lock.release()

    assert lock.path.exists()


# --- waiting ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(waiting, "monotonic", fake.monotonic)
    monkeypatch.setattr(waiting, "sleep", fake.sleep)
    return fake


DEADLINE = Deadline(seconds=30, interval=10, key="release.timeouts.model_test")


def test_wait_for_polls_until_final(clock, caplog):
    answers = iter(["queued", "running", "running", "done"])

    with caplog.at_level(logging.INFO):
        result = wait_for(
            "Job 7", lambda: next(answers), str, lambda s: s == "done", DEADLINE
        )

    assert result == "done"
    assert clock.slept == [10, 10, 10]
    assert "Job 7: queued" in caplog.text
    assert "Job 7: running" in caplog.text
    assert "Job 7: done after 30 s" in caplog.text


def test_wait_for_stops_at_the_deadline_with_the_last_status(clock):
    with pytest.raises(WaitTimeout) as late:
        wait_for("Job 7", lambda: "running", str, lambda s: False, DEADLINE)

    message = str(late.value)
    assert "Job 7 had not finished after 30 s" in message
    assert "release.timeouts.model_test" in message
    assert "last status: running" in message
    assert clock.now == 30


def test_the_last_sleep_does_not_overshoot_the_deadline(clock):
    deadline = Deadline(seconds=25, interval=10, key="k")

    with pytest.raises(WaitTimeout):
        wait_for("Job", lambda: "running", str, lambda s: False, deadline)

    assert clock.slept == [10, 10, 5]


def test_a_deadline_comes_from_the_timeouts_of_config():
    settings = default_settings(Path("."))

    deadline = Deadline.of(settings.release.timeouts, "environment_build")

    assert deadline.seconds == 3600
    assert deadline.interval == 5
    assert deadline.key == "release.timeouts.environment_build"


def test_sdk_waits_get_the_same_deadline_and_errors():
    with sdk_wait("Deploying", DEADLINE) as max_wait:
        assert max_wait == 30

    timed_out = pytest.raises(WaitTimeout, match="Last status was 200: RUNNING")
    with timed_out, sdk_wait("Deploying", DEADLINE):
        raise AsyncTimeoutError("Client timed out. Last status was 200: RUNNING")

    failed = pytest.raises(RemoteError, match="ended the job of Deploying in error")
    with failed, sdk_wait("Deploying", DEADLINE):
        raise AsyncProcessUnsuccessfulError("Job Data: ERROR")
