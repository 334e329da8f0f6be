"""`drtool predict --target local` through the CLI, on a real DRUM server."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from drtool.cli import cli
from drtool.predict.drum import DrumServer, process_group_alive
from drtool.predict.output import journal_path
from tests.fake_model import make_fake_model, write_prepared

pytestmark = pytest.mark.drum


def write_config(folder: Path, model_dir: Path) -> Path:
    config = folder / "config.yaml"
    config.write_text(
        f"model:\n  dir: {model_dir}\n  class_labels: ['0', '1']\n"
        f"data:\n  dir: {folder / 'data'}\n"
        f"predict:\n  local:\n    start_timeout: 60\n"
    )
    (folder / "data").mkdir(exist_ok=True)
    return config


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_every_row_and_stops_its_server(tmp_path):
    model = make_fake_model(tmp_path / "model")
    config = write_config(tmp_path, model)
    ids = write_prepared(tmp_path / "data" / "prepared_data.csv", 40)

    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "predict",
            "--target",
            "local",
            "--rows-per-request",
            "7",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "data" / "predictions.csv")
    assert [r["id"] for r in rows] == ids
    assert {r["status"] for r in rows} == {"ok"}
    assert '"succeeded": 40' in result.stdout


def test_a_rejected_row_is_written_with_its_reason_and_exit_code_3(tmp_path):
    model = make_fake_model(tmp_path / "model", reject=["row-00003"])
    config = write_config(tmp_path, model)
    write_prepared(tmp_path / "data" / "prepared_data.csv", 6)

    result = CliRunner().invoke(cli, ["--config", str(config), "predict"])

    assert result.exit_code == 3
    assert "Error: 1 of 6 rows failed" in result.stderr
    failed = [
        r
        for r in read_rows(tmp_path / "data" / "predictions.csv")
        if r["status"] == "failed"
    ]
    assert [(r["id"], r["error"]) for r in failed] == [
        ("row-00003", "rejected by the test model")
    ]


def test_address_uses_a_running_server_and_starts_none(tmp_path):
    model = make_fake_model(tmp_path / "model")
    config = write_config(tmp_path, tmp_path / "no-model-here")
    write_prepared(tmp_path / "data" / "prepared_data.csv", 3)
    with DrumServer(model, start_timeout=60) as server:
        address = server.url.removeprefix("http://")
        result = CliRunner().invoke(
            cli, ["--config", str(config), "predict", "--address", address]
        )
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "data" / "predictions.csv")) == 3


def test_address_with_nothing_listening_says_so(tmp_path):
    config = write_config(tmp_path, tmp_path / "model")
    write_prepared(tmp_path / "data" / "prepared_data.csv", 1)
    result = CliRunner().invoke(
        cli, ["--config", str(config), "predict", "--address", "127.0.0.1:9"]
    )
    assert result.exit_code == 1
    assert "did not answer" in result.stderr


def test_a_model_that_fails_to_load_fails_fast_with_drums_log(tmp_path):
    model = make_fake_model(tmp_path / "model", fail_load="cannot read weights")
    config = write_config(tmp_path, model)
    write_prepared(tmp_path / "data" / "prepared_data.csv", 1)
    result = CliRunner().invoke(cli, ["--config", str(config), "predict"])
    assert result.exit_code == 1
    assert "cannot read weights" in result.stderr
    assert not (tmp_path / "data" / "predictions.csv").exists()


def start_slow_predict(tmp_path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `drtool predict` on 30 slow rows; return it once 2 rows were served."""
    requests_log = tmp_path / "requests.log"
    model = make_fake_model(
        tmp_path / "model", delay=0.3, requests_log=str(requests_log)
    )
    config = write_config(tmp_path, model)
    write_prepared(tmp_path / "data" / "prepared_data.csv", 30)
    command = [
        sys.executable,
        "-m",
        "drtool",
        "--config",
        str(config),
        "-v",
        "predict",
        "--mode",
        "single",
        "--rows-per-request",
        "1",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(requests_log, 2)
    return process, command


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_or_a_hangup_stops_the_server_and_keeps_finished_rows(tmp_path, signum):
    process, command = start_slow_predict(tmp_path)
    process.send_signal(signum)  # Ctrl-C, or the terminal was closed
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    group = int(re.search(r"process group (\d+)", stderr).group(1))
    assert not process_group_alive(group)
    output = tmp_path / "data" / "predictions.csv"
    assert not output.exists()
    assert journal_path(output).exists()

    requests_log = tmp_path / "requests.log"
    before = len(requests_log.read_text().splitlines())
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    ids = [r["id"] for r in read_rows(tmp_path / "data" / "prepared_data.csv")]
    assert [r["id"] for r in read_rows(output)] == ids
    sent_again = len(requests_log.read_text().splitlines()) - before
    assert sent_again < len(ids)  # finished rows were not sent again


def _wait_for_lines(path: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never reached {count} lines")


@pytest.mark.parametrize("command", ["load", "predict", "submit-actuals", "release"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
