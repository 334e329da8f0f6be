"""`submit-actuals --target remote`: batches, the association id check, resume.

DataRobot is a `responses` mock on a fake host; the SDK's waiters do not sleep.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests
import responses
from click.testing import CliRunner

from drtool.actuals import journal_path, submit_actuals
from drtool.cli import cli
from drtool.errors import AuthError, ConfigError, ConnectionFailure, InputError
from tests.remote_mocks import (
    DEPLOYMENT_ID,
    DEPLOYMENT_URL,
    ENDPOINT,
    SECRETS,
    mock_deployment,
    settings_for,
    use_fake_credentials,
    write_config,
)

SETTINGS_URL = f"{DEPLOYMENT_URL}settings/"
ACTUALS_URL = f"{DEPLOYMENT_URL}actuals/fromJSON/"
STATUS_URL = f"{ENDPOINT}/status/job-1/"


@pytest.fixture(autouse=True)
def credentials(monkeypatch, tmp_path):
    use_fake_credentials(monkeypatch, tmp_path / "home")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    # The SDK's waiters sleep 5 s between polls.
    monkeypatch.setattr("time.sleep", lambda seconds: None)


@pytest.fixture(autouse=True)
def mock():
    """Intercept every request, so that no test can reach a network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        yield fake


class FakeActuals:
    """DataRobot's actuals route: records each batch, accepts or refuses it."""

    def __init__(self, mock, column="id"):
        self.batches: list[list[dict]] = []
        self.answers: list = []  # per POST: None (accept), or what to do
        mock_deployment(mock)
        association = {"columnNames": [column] if column else None}
        mock.get(SETTINGS_URL, json={"associationId": association})
        mock.add_callback(responses.POST, ACTUALS_URL, callback=self.post)
        mock.add_callback(responses.GET, STATUS_URL, callback=self.status)
        self.job_status = "COMPLETED"

    def post(self, request):
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, BaseException):
            raise answer
        self.batches.append(json.loads(request.body)["data"])
        if isinstance(answer, tuple):
            status, body = answer
            return status, {"Content-Type": "application/json"}, json.dumps(body)
        self.job_status = answer or "COMPLETED"
        return 202, {"Location": STATUS_URL}, json.dumps({})

    def status(self, request):
        if self.job_status == "COMPLETED":
            return 303, {"Location": DEPLOYMENT_URL}, ""
        body = {"status": "ERROR", "message": self.job_status}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def sent_ids(self):
        return [item["associationId"] for batch in self.batches for item in batch]


def write_actuals(path, count, extra_columns=True):
    """Write an actuals.csv of ``count`` rows and return its ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [f"row-{i:05d}" for i in range(count)]
    if extra_columns:
        lines = ["id,actual,was_acted_on,timestamp"] + [
            f"{row_id},{i % 2},{'true' if i % 3 else 'false'},2024-05-01T12:00:00"
            for i, row_id in enumerate(ids)
        ]
    else:
        lines = ["id,actual"] + [f"{row_id},{i % 2}" for i, row_id in enumerate(ids)]
    path.write_text("\n".join(lines) + "\n")
    return ids


# --- batches --------------------------------------------------------------------


def test_25001_actuals_become_three_batches_with_datarobots_fields(tmp_path, mock):
    fake = FakeActuals(mock)
    ids = write_actuals(tmp_path / "actuals.csv", 25_001)

    report = submit_actuals(
        settings_for(tmp_path), DEPLOYMENT_ID, tmp_path / "actuals.csv"
    )

    assert [len(batch) for batch in fake.batches] == [10_000, 10_000, 5_001]
    assert fake.sent_ids() == ids
    assert fake.batches[0][0] == {
        "associationId": "row-00000",
        "actualValue": "0",
        "wasActedOn": False,
        "timestamp": "2024-05-01T12:00:00+00:00",
    }
    assert fake.batches[2][-1]["actualValue"] == "0"  # row 25000: a string
    assert fake.batches[0][1]["wasActedOn"] is True
    assert (report.rows, report.accepted, report.rejected) == (25_001, 25_001, 0)
    assert report.batches_sent == 3 and report.association_id_column == "id"


def test_optional_columns_left_out_are_not_sent(tmp_path, mock):
    fake = FakeActuals(mock)
    write_actuals(tmp_path / "actuals.csv", 3, extra_columns=False)

    submit_actuals(settings_for(tmp_path), DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert fake.batches[0][0] == {"associationId": "row-00000", "actualValue": "0"}


def test_the_batch_size_comes_from_config(tmp_path, mock):
    fake = FakeActuals(mock)
    write_actuals(tmp_path / "actuals.csv", 7)
    settings = settings_for(tmp_path, "actuals:\n  batch_size: 3\n")

    submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert [len(batch) for batch in fake.batches] == [3, 3, 1]


# --- the association id ---------------------------------------------------------


def test_no_association_id_is_a_clear_error_and_nothing_is_sent(tmp_path, mock):
    fake = FakeActuals(mock, column=None)
    write_actuals(tmp_path / "actuals.csv", 5)

    with pytest.raises(ConfigError) as caught:
        submit_actuals(settings_for(tmp_path), DEPLOYMENT_ID, tmp_path / "actuals.csv")

    message = str(caught.value)
    assert "no association id column" in message and "drtool release" in message
    assert fake.batches == []
    assert not [c for c in mock.calls if c.request.method == "POST"]


def test_another_association_column_than_configured_is_warned_about(
    tmp_path, mock, caplog
):
    FakeActuals(mock, column="case_id")
    write_actuals(tmp_path / "actuals.csv", 2)

    report = submit_actuals(
        settings_for(tmp_path), DEPLOYMENT_ID, tmp_path / "actuals.csv"
    )

    assert report.association_id_column == "case_id"
    assert "'case_id'" in caplog.text


# --- rejections -----------------------------------------------------------------


def test_a_rejected_batch_is_counted_with_the_message_and_the_rest_go_on(
    tmp_path, mock
):
    fake = FakeActuals(mock)
    fake.answers = [None, (422, {"message": "actualValue must be one of 0, 1"})]
    write_actuals(tmp_path / "actuals.csv", 25)
    settings = settings_for(tmp_path, "actuals:\n  batch_size: 10\n")

    report = submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert (report.accepted, report.rejected, report.not_sent) == (15, 10, 0)
    (rejection,) = report.rejections
    assert rejection.message == "HTTP 422: actualValue must be one of 0, 1"
    assert (rejection.first_id, rejection.last_id) == ("row-00010", "row-00019")


def test_a_job_that_ends_in_error_rejects_its_batch(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = ["association ids unknown"]
    write_actuals(tmp_path / "actuals.csv", 4)

    report = submit_actuals(
        settings_for(tmp_path), DEPLOYMENT_ID, tmp_path / "actuals.csv"
    )

    assert report.rejected == 4 and report.accepted == 0
    assert "association ids unknown" in report.rejections[0].message


def test_three_rejections_in_a_row_stop_the_run(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = [(400, {"message": "no"})] * 3
    write_actuals(tmp_path / "actuals.csv", 50)
    settings = settings_for(tmp_path, "actuals:\n  batch_size: 10\n")

    report = submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert len(fake.batches) == 3
    assert (report.rejected, report.not_sent, report.accepted) == (30, 20, 0)


def test_rejected_credentials_stop_the_run_at_once(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = [(401, {"message": "Invalid API token"})]
    write_actuals(tmp_path / "actuals.csv", 25)
    settings = settings_for(tmp_path, "actuals:\n  batch_size: 10\n")

    with pytest.raises(AuthError) as caught:
        submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert len(fake.batches) == 1
    assert all(s not in str(caught.value) for s in SECRETS)


# --- resume ---------------------------------------------------------------------


def test_a_rerun_after_an_interruption_does_not_resend_accepted_batches(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = [None, KeyboardInterrupt()]
    ids = write_actuals(tmp_path / "actuals.csv", 25_001)
    settings = settings_for(tmp_path)

    with pytest.raises(KeyboardInterrupt):
        submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")
    assert fake.sent_ids() == ids[:10_000]
    journal = json.loads(journal_path(tmp_path / "actuals.csv").read_text())
    assert journal["deployment_id"] == DEPLOYMENT_ID
    assert journal["accepted_rows"] == 10_000
    assert journal["accepted_ranges"] == [[0, 10_000]]

    fake.batches.clear()
    report = submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert fake.sent_ids() == ids[10_000:]
    assert [len(batch) for batch in fake.batches] == [10_000, 5_001]
    assert (report.accepted, report.accepted_earlier) == (15_001, 10_000)


def test_a_lost_connection_keeps_the_accepted_batches_for_the_rerun(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = [None, requests.ConnectionError("Connection refused")]
    ids = write_actuals(tmp_path / "actuals.csv", 30)
    settings = settings_for(tmp_path, "actuals:\n  batch_size: 10\n")

    with pytest.raises(ConnectionFailure, match="rerun resumes"):
        submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    fake.batches.clear()
    submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")
    assert fake.sent_ids() == ids[10:]


def test_the_record_holds_when_the_batch_size_changes(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = [None, None, KeyboardInterrupt()]
    ids = write_actuals(tmp_path / "actuals.csv", 30)
    with pytest.raises(KeyboardInterrupt):
        submit_actuals(
            settings_for(tmp_path, "actuals:\n  batch_size: 10\n"),
            DEPLOYMENT_ID,
            tmp_path / "actuals.csv",
        )

    fake.batches.clear()
    submit_actuals(
        settings_for(tmp_path, "actuals:\n  batch_size: 7\n"),
        DEPLOYMENT_ID,
        tmp_path / "actuals.csv",
    )

    assert fake.sent_ids() == ids[20:]
    assert [len(batch) for batch in fake.batches] == [7, 3]


def test_a_rerun_of_a_finished_file_sends_nothing(tmp_path, mock):
    fake = FakeActuals(mock)
    write_actuals(tmp_path / "actuals.csv", 12)
    settings = settings_for(tmp_path, "actuals:\n  batch_size: 5\n")
    submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    fake.batches.clear()
    report = submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert fake.batches == []
    assert (report.accepted, report.accepted_earlier) == (0, 12)


def test_a_rerun_sends_the_rejected_rows_again_and_only_them(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = [None, (422, {"message": "try later"}), None]
    ids = write_actuals(tmp_path / "actuals.csv", 30)
    settings = settings_for(tmp_path, "actuals:\n  batch_size: 10\n")
    submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    fake.batches.clear()
    report = submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert fake.sent_ids() == ids[10:20]
    assert (report.accepted, report.accepted_earlier, report.rejected) == (10, 20, 0)


def test_a_changed_file_or_another_deployment_is_sent_whole(tmp_path, mock, caplog):
    fake = FakeActuals(mock)
    write_actuals(tmp_path / "actuals.csv", 4)
    settings = settings_for(tmp_path)
    submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")
    ids = write_actuals(tmp_path / "actuals.csv", 6)

    fake.batches.clear()
    submit_actuals(settings, DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert fake.sent_ids() == ids
    assert "another version of the file" in caplog.text


# --- the file -------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, complaint",
    [
        ("r2,cat,,", "actual 'cat'"),
        ("r2,1,maybe,", "was_acted_on 'maybe'"),
        ("r2,1,,yesterday", "timestamp 'yesterday'"),
        (",1,,", "no id"),
        ("r1,1,,", "appears twice"),
        (f"{'x' * 129},1,,", "at most 128"),
    ],
)
def test_a_bad_line_fails_by_its_number_before_anything_is_sent(
    tmp_path, mock, line, complaint
):
    fake = FakeActuals(mock)
    (tmp_path / "actuals.csv").write_text(
        f"id,actual,was_acted_on,timestamp\nr1,0,,\n{line}\n"
    )

    with pytest.raises(InputError, match="line 3") as caught:
        submit_actuals(settings_for(tmp_path), DEPLOYMENT_ID, tmp_path / "actuals.csv")

    assert complaint in str(caught.value)
    assert fake.batches == []


def test_a_missing_file_says_how_to_make_it(tmp_path, mock):
    FakeActuals(mock)
    with pytest.raises(InputError, match="drtool load"):
        submit_actuals(settings_for(tmp_path), DEPLOYMENT_ID, tmp_path / "none.csv")


# --- through the command line ---------------------------------------------------


def _invoke(tmp_path, *args, extra=""):
    config = write_config(tmp_path, extra)
    return CliRunner().invoke(
        cli,
        ["--config", str(config), "-vv", "submit-actuals", "--target", "remote", *args],
        catch_exceptions=False,
    )


def test_the_cli_prints_the_report_and_no_secret(tmp_path, mock, caplog):
    caplog.set_level(logging.DEBUG)
    FakeActuals(mock)
    write_actuals(tmp_path / "data" / "actuals.csv", 12)

    result = _invoke(
        tmp_path,
        "--deployment-id",
        DEPLOYMENT_ID,
        "--progress",
        extra="actuals:\n  batch_size: 5\n",
    )

    assert result.exit_code == 0, result.output
    assert "accepted: 12" in result.stdout and "rejected: 0" in result.stdout
    assert "Sending actuals" in result.stderr
    everything = result.output + result.stderr + caplog.text
    assert all(secret not in everything for secret in SECRETS)


def test_the_cli_json_report_and_exit_code_3_on_a_rejected_batch(tmp_path, mock):
    fake = FakeActuals(mock)
    fake.answers = [(422, {"message": "bad batch"})]
    write_actuals(tmp_path / "data" / "actuals.csv", 8)

    result = _invoke(
        tmp_path,
        "--json",
        extra=f"deployment:\n  id: {DEPLOYMENT_ID}\nactuals:\n  batch_size: 5\n",
    )

    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert (report["accepted"], report["rejected"]) == (3, 5)
    assert report["rejections"][0]["message"] == "HTTP 422: bad batch"
    assert "Error: 5 of 8 actuals were not accepted" in result.stderr


def test_the_cli_without_an_association_id_exits_1_saying_how_to_fix_it(tmp_path, mock):
    FakeActuals(mock, column=None)
    write_actuals(tmp_path / "data" / "actuals.csv", 2)

    result = _invoke(tmp_path, "--deployment-id", DEPLOYMENT_ID)

    assert result.exit_code == 1
    assert "Error: deployment" in result.stderr and "drtool release" in result.stderr


def test_predictions_is_a_usage_error_for_the_remote_target(tmp_path):
    result = _invoke(tmp_path, "--predictions", "p.csv")
    assert result.exit_code == 2
