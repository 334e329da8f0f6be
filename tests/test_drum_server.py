"""A real `drum server` on 127.0.0.1: start, readiness, failures, stop."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from drtool.errors import ServerStartError
from drtool.predict import drum
from drtool.predict.drum import DrumServer, process_group_alive
from tests.fake_model import make_fake_model

pytestmark = pytest.mark.drum


def test_a_server_becomes_ready_and_its_process_group_is_gone_after(tmp_path):
    model = make_fake_model(tmp_path / "model")
    with DrumServer(model, start_timeout=60) as server:
        group = server.pid
        assert server.url.startswith("http://127.0.0.1:")
        answer = requests.post(
            f"{server.url}/predictUnstructured/",
            data=b"id,img\nr1,QQ==\n",
            headers={"Content-Type": "text/csv; charset=utf-8"},
            timeout=30,
        )
        assert answer.json()["predictions"][0]["label"] == "1"
    assert group is not None and not process_group_alive(group)


def test_a_model_that_fails_to_load_quotes_drums_log_and_does_not_hang(tmp_path):
    model = make_fake_model(tmp_path / "model", fail_load="weights file is corrupt")
    started = time.monotonic()
    with (
        pytest.raises(ServerStartError) as caught,
        DrumServer(model, start_timeout=120),
    ):
        pass
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "exited with code" in message
    assert "weights file is corrupt" in message


def test_a_worker_respawned_forever_hits_the_deadline_and_is_stopped(tmp_path):
    model = make_fake_model(tmp_path / "model", exit_in_load=True)
    server = DrumServer(model, start_timeout=8)
    with pytest.raises(ServerStartError) as caught:
        server.__enter__()
    assert "was not ready after 8 s" in str(caught.value)
    assert "predict.local.start_timeout" in str(caught.value)
    assert server.pid is None  # stopped, and its group with it


def test_a_port_taken_before_drum_binds_it_is_retried(tmp_path, monkeypatch):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    ports = iter([taken])
    real_free_port = drum.free_loopback_port
    monkeypatch.setattr(
        drum, "free_loopback_port", lambda: next(ports, None) or real_free_port()
    )
    model = make_fake_model(tmp_path / "model")
    try:
        with DrumServer(model, start_timeout=60) as server:
            assert not server.url.endswith(f":{taken}")
            assert requests.get(f"{server.url}/", timeout=10).status_code == 200
    finally:
        holder.close()


def test_the_server_starts_with_a_clean_environment(tmp_path, monkeypatch):
    # DRUM would read these as its own arguments and refuse to start.
    monkeypatch.setenv("TARGET_TYPE", "binary")
    monkeypatch.setenv("ADDRESS", "0.0.0.0:1")
    monkeypatch.setenv("DATAROBOT_API_TOKEN", "s3cret")
    model = make_fake_model(tmp_path / "model")
    with DrumServer(model, start_timeout=60) as server:
        assert requests.get(f"{server.url}/", timeout=10).status_code == 200
    environment = drum.server_environment(tmp_path, workers=2)
    assert "TARGET_TYPE" not in environment
    assert "DATAROBOT_API_TOKEN" not in environment
