"""`predict --target remote`: the deployment's URL and headers, retries, resume.

Every DataRobot and prediction-server URL is a `responses` mock on a fake host.
"""

from __future__ import annotations

import csv
import json
import logging
import threading

import pytest
import requests
import responses
from click.testing import CliRunner

from drtool.cli import cli
from drtool.errors import AuthError, ConfigError, ConnectionFailure, RemoteError
from drtool.predict import SendOptions, predict_file
from drtool.predict.output import journal_path
from drtool.predict.remote import (
    predict_remotely,
    remote_target,
    resolve_deployment_id,
)
from drtool.predict.sender import RetryPolicy
from tests.fake_model import write_prepared
from tests.remote_mocks import (
    DATAROBOT_KEY,
    DEPLOYMENT_ID,
    DEPLOYMENT_URL,
    ENDPOINT,
    PREDICTION_SERVER,
    SECRETS,
    TOKEN,
    mock_deployment,
    prediction_answer,
    sent_ids,
    settings_for,
    use_fake_credentials,
    write_config,
)

SERVER_URL = (
    f"{PREDICTION_SERVER}/predApi/v1.0/deployments/{DEPLOYMENT_ID}"
    f"/predictionsUnstructured"
)
SERVERLESS_URL = f"{ENDPOINT}/deployments/{DEPLOYMENT_ID}/predictionsUnstructured"
OPTIONS = SendOptions(
    rows_per_request=3, concurrency=1, timeout=7.5, policy=RetryPolicy(attempts=3)
)


@pytest.fixture(autouse=True)
def credentials(monkeypatch, tmp_path):
    use_fake_credentials(monkeypatch, tmp_path / "home")


@pytest.fixture(autouse=True)
def mock():
    """Intercept every request, so that no test can reach a network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        yield fake


@pytest.fixture
def pauses(monkeypatch):
    """Record every pause the sender asks for, and make it instant."""
    seen = []
    original = RetryPolicy.delay

    def instant(self, attempt, retry_after=None):
        seen.append(original(self, attempt, retry_after))
        return 0.0

    monkeypatch.setattr(RetryPolicy, "delay", instant)
    return seen


def read_output(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def prediction_calls(mock, url=SERVER_URL):
    return [c for c in mock.calls if c.request.url == url]


# --- URL and headers ------------------------------------------------------------


def test_a_dedicated_server_gets_its_url_the_bearer_token_and_the_key(tmp_path, mock):
    mock_deployment(mock)
    target = remote_target(settings_for(tmp_path), DEPLOYMENT_ID)

    assert target.url == SERVER_URL
    headers = target.headers()
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["DataRobot-Key"] == DATAROBOT_KEY
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert all(s not in repr(target) + target.describe() for s in SECRETS)
    # The SDK call that found the server carried the token too.
    assert mock.calls[0].request.url == DEPLOYMENT_URL


def test_a_serverless_deployment_is_reached_through_the_api_without_a_key(
    tmp_path, mock
):
    mock_deployment(mock, serverless=True)
    target = remote_target(settings_for(tmp_path), DEPLOYMENT_ID)

    assert target.url == SERVERLESS_URL
    assert target.headers()["Authorization"] == f"Bearer {TOKEN}"
    assert "DataRobot-Key" not in target.headers()


def test_a_server_without_a_key_gets_no_key_header(tmp_path, mock):
    mock_deployment(mock, key=None)
    target = remote_target(settings_for(tmp_path), DEPLOYMENT_ID)
    assert target.url == SERVER_URL
    assert "DataRobot-Key" not in target.headers()


def test_the_requests_carry_exactly_the_headers_datarobot_expects(tmp_path, mock):
    mock_deployment(mock)
    mock.add_callback(responses.POST, SERVER_URL, callback=prediction_answer)
    write_prepared(tmp_path / "in.csv", 4)

    report = predict_remotely(
        settings_for(tmp_path),
        DEPLOYMENT_ID,
        tmp_path / "in.csv",
        tmp_path / "out.csv",
        OPTIONS,
    )

    assert (report.rows, report.succeeded, report.requests) == (4, 4, 2)
    for call in prediction_calls(mock):
        sent = call.request.headers
        assert sent["Authorization"] == f"Bearer {TOKEN}"
        assert sent["DataRobot-Key"] == DATAROBOT_KEY
        assert sent["Content-Type"] == "text/csv; charset=utf-8"
    assert report.target == f"deployment {DEPLOYMENT_ID} ({SERVER_URL})"


def test_a_deployment_with_no_prediction_server_says_how_to_fix_it(tmp_path, mock):
    mock.get(DEPLOYMENT_URL, json={"id": DEPLOYMENT_ID})
    with pytest.raises(ConfigError, match="no prediction server"):
        remote_target(settings_for(tmp_path), DEPLOYMENT_ID)


def test_an_unknown_deployment_says_where_the_id_came_from(tmp_path, mock):
    mock.get(DEPLOYMENT_URL, status=404, json={"message": "Not found"})
    with pytest.raises(RemoteError, match="--deployment-id"):
        remote_target(settings_for(tmp_path), DEPLOYMENT_ID)


def test_a_rejected_token_when_reading_the_deployment_is_an_auth_error(tmp_path, mock):
    mock.get(DEPLOYMENT_URL, status=401, json={"message": "Invalid API token"})
    with pytest.raises(AuthError) as caught:
        remote_target(settings_for(tmp_path), DEPLOYMENT_ID)
    assert TOKEN not in str(caught.value)


def test_no_token_anywhere_says_where_to_put_one(tmp_path, monkeypatch, mock):
    monkeypatch.delenv("DATAROBOT_API_TOKEN")
    with pytest.raises(ConfigError, match="DATAROBOT_API_TOKEN"):
        remote_target(settings_for(tmp_path), DEPLOYMENT_ID)
    assert not mock.calls


# --- which deployment -----------------------------------------------------------


def test_the_option_wins_then_config_then_the_release_state(tmp_path):
    settings = settings_for(tmp_path, "deployment:\n  id: from-config\n")
    assert resolve_deployment_id(settings, "from-option") == "from-option"
    assert resolve_deployment_id(settings) == "from-config"

    settings = settings_for(tmp_path)
    settings.state_file.write_text(
        json.dumps({"format": 1, "objects": {"deployment": {"id": "from-release"}}})
    )
    assert resolve_deployment_id(settings) == "from-release"


def test_no_deployment_anywhere_says_how_to_get_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve_deployment_id(settings_for(tmp_path))
    message = str(caught.value)
    assert "--deployment-id" in message and "drtool release" in message
    assert "deployment.id" in message


# --- retries, errors, timeouts --------------------------------------------------


def _predict(tmp_path, rows=3, options=OPTIONS):
    write_prepared(tmp_path / "in.csv", rows)
    return predict_remotely(
        settings_for(tmp_path),
        DEPLOYMENT_ID,
        tmp_path / "in.csv",
        tmp_path / "out.csv",
        options,
    )


def test_429_waits_as_retry_after_says_then_succeeds(tmp_path, mock, pauses):
    mock_deployment(mock)
    mock.post(SERVER_URL, status=429, headers={"Retry-After": "7"}, json={})
    mock.add_callback(responses.POST, SERVER_URL, callback=prediction_answer)

    report = _predict(tmp_path)

    assert report.succeeded == 3
    assert pauses == [7.0]
    assert len(prediction_calls(mock)) == 2


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_request_is_not_retried_and_fails_its_rows_with_the_message(
    tmp_path, mock, pauses, status
):
    mock_deployment(mock)
    mock.post(SERVER_URL, status=status, json={"message": "'wd' is not allowed key"})

    report = _predict(tmp_path)

    assert len(prediction_calls(mock)) == 1 and pauses == []
    assert report.failed == 3
    rows = read_output(tmp_path / "out.csv")
    assert {r["error"] for r in rows} == {f"HTTP {status}: 'wd' is not allowed key"}


def test_401_is_not_retried_and_stops_without_showing_the_secrets(
    tmp_path, mock, pauses
):
    mock_deployment(mock)
    mock.post(SERVER_URL, status=401, json={"message": "Invalid API token"})

    with pytest.raises(AuthError) as caught:
        _predict(tmp_path)

    assert len(prediction_calls(mock)) == 1 and pauses == []
    assert all(s not in str(caught.value) for s in SECRETS)


def test_a_timeout_is_retried_and_every_request_has_one(tmp_path, mock, monkeypatch):
    mock_deployment(mock)
    mock.post(SERVER_URL, body=requests.ReadTimeout("read timed out"))
    mock.add_callback(responses.POST, SERVER_URL, callback=prediction_answer)
    timeouts = []
    original = requests.Session.send

    def spy(self, request, **kwargs):
        if request.url == SERVER_URL:
            timeouts.append(kwargs.get("timeout"))
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", spy)
    monkeypatch.setattr(RetryPolicy, "delay", lambda *args: 0.0)

    report = _predict(tmp_path)

    assert report.succeeded == 3
    assert timeouts == [7.5, 7.5]


def test_a_refused_connection_is_retried_then_names_the_rows(tmp_path, mock, pauses):
    mock_deployment(mock)
    mock.post(SERVER_URL, body=requests.ConnectionError("Connection refused"))

    with pytest.raises(ConnectionFailure) as caught:
        _predict(tmp_path)

    assert len(prediction_calls(mock)) == 3 and len(pauses) == 2
    assert "row-00000" in str(caught.value) and "resume" in str(caught.value)
    assert journal_path(tmp_path / "out.csv").exists()


# --- the 50 MB limit, by size as well as rows -----------------------------------


def test_requests_are_split_by_size_and_an_oversized_row_fails_by_its_id(
    tmp_path, mock
):
    mock_deployment(mock)
    mock.add_callback(responses.POST, SERVER_URL, callback=prediction_answer)
    (tmp_path / "in.csv").write_text(
        "id,img,x1,y1,x2,y2\n"
        + "".join(f"r{i},{'A' * 60},0,0,8,8\n" for i in range(6))
        + f"huge,{'A' * 400},0,0,8,8\n"
        + "r6,AAAA,0,0,8,8\n"
    )
    options = SendOptions(rows_per_request=100, max_request_bytes=200, concurrency=1)

    report = predict_remotely(
        settings_for(tmp_path),
        DEPLOYMENT_ID,
        tmp_path / "in.csv",
        tmp_path / "out.csv",
        options,
    )

    bodies = [c.request.body for c in prediction_calls(mock)]
    assert len(bodies) > 1
    assert all(len(body) <= 200 for body in bodies)
    sent = [i for c in prediction_calls(mock) for i in sent_ids(c.request)]
    assert sent == [f"r{i}" for i in range(7)]
    assert report.failed == 1 and report.failures[0]["id"] == "huge"
    assert "too large" in report.failures[0]["error"]


# --- interruption and resume ----------------------------------------------------


def test_an_interrupted_run_resumes_and_every_row_is_predicted_once(tmp_path, mock):
    ids = write_prepared(tmp_path / "in.csv", 10)
    settings = settings_for(tmp_path)
    mock_deployment(mock)
    answered: list[str] = []
    calls = {"n": 0}

    def dies_on_third_request(request):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        answered.extend(sent_ids(request))
        return prediction_answer(request)

    mock.add_callback(responses.POST, SERVER_URL, callback=dies_on_third_request)
    with pytest.raises(KeyboardInterrupt):
        predict_remotely(
            settings, DEPLOYMENT_ID, tmp_path / "in.csv", tmp_path / "out.csv", OPTIONS
        )
    assert answered[:6] == ids[:6]
    assert not (tmp_path / "out.csv").exists()
    # On Ctrl-C drtool does not wait for the request in flight; let it end.
    for thread in threading.enumerate():
        if thread.name.startswith("predict"):
            thread.join(timeout=10)

    report = predict_remotely(
        settings, DEPLOYMENT_ID, tmp_path / "in.csv", tmp_path / "out.csv", OPTIONS
    )

    # Every row is in the output once. The server may have answered the one
    # request in flight at the interruption, which the rerun sends again: no
    # more than that is ever sent twice.
    assert [r["id"] for r in read_output(tmp_path / "out.csv")] == ids
    # A request that finished alongside the interrupted one is kept too.
    assert report.resumed in (6, 7) and report.succeeded == 10
    assert sorted(set(answered)) == ids
    assert len(answered) - len(ids) <= OPTIONS.rows_per_request


def test_the_remote_target_uses_the_one_sending_path(tmp_path, mock):
    """predict_file with the remote target gives the same file as predict_remotely."""
    mock_deployment(mock)
    mock.add_callback(responses.POST, SERVER_URL, callback=prediction_answer)
    ids = write_prepared(tmp_path / "in.csv", 5)
    target = remote_target(settings_for(tmp_path), DEPLOYMENT_ID)

    predict_file(tmp_path / "in.csv", tmp_path / "out.csv", target, ["0", "1"], OPTIONS)

    assert [r["id"] for r in read_output(tmp_path / "out.csv")] == ids


# --- through the command line ---------------------------------------------------


def _prepared(tmp_path, rows):
    path = tmp_path / "data" / "prepared_data.csv"
    path.parent.mkdir(exist_ok=True)
    return write_prepared(path, rows)


def _invoke(tmp_path, *args, extra=""):
    config = write_config(tmp_path, extra)
    return CliRunner().invoke(
        cli, ["--config", str(config), "-vv", "predict", *args], catch_exceptions=False
    )


def test_the_cli_predicts_remotely_and_shows_no_secret(tmp_path, mock, caplog):
    caplog.set_level(logging.DEBUG)
    mock_deployment(mock)
    mock.add_callback(responses.POST, SERVER_URL, callback=prediction_answer)
    ids = _prepared(tmp_path, 5)

    result = _invoke(
        tmp_path, "--target", "remote", "--deployment-id", DEPLOYMENT_ID, "--json"
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["succeeded"] == 5
    rows = read_output(tmp_path / "data" / "predictions.csv")
    assert [r["id"] for r in rows] == ids
    everything = result.output + result.stderr + caplog.text
    assert SERVER_URL in everything
    assert all(secret not in everything for secret in SECRETS)


def test_the_cli_takes_the_deployment_of_config_yaml(tmp_path, mock):
    mock_deployment(mock, serverless=True)
    mock.add_callback(responses.POST, SERVERLESS_URL, callback=prediction_answer)
    _prepared(tmp_path, 2)

    result = _invoke(
        tmp_path, "--target", "remote", extra=f"deployment:\n  id: {DEPLOYMENT_ID}\n"
    )

    assert result.exit_code == 0, result.output
    assert len(prediction_calls(mock, SERVERLESS_URL)) == 1


def test_the_cli_fails_rows_with_exit_code_3_naming_them(tmp_path, mock, caplog):
    caplog.set_level(logging.DEBUG)
    mock_deployment(mock)
    mock.add_callback(responses.POST, SERVER_URL, callback=prediction_answer)
    _prepared(tmp_path, 0)
    (tmp_path / "data" / "prepared_data.csv").write_text(
        f"id,img,x1,y1,x2,y2\nok1,AAAA,0,0,8,8\nhuge,{'A' * 500},0,0,8,8\n"
    )

    result = _invoke(
        tmp_path,
        "--target",
        "remote",
        "--deployment-id",
        DEPLOYMENT_ID,
        extra="predict:\n  max_request_bytes: 200\n",
    )

    assert result.exit_code == 3
    assert "Error: 1 of 2 rows failed" in result.stderr
    assert "failed: huge: row too large" in result.stderr
    assert all(s not in result.stderr + caplog.text for s in SECRETS)


def test_the_cli_reports_a_refused_connection_with_exit_code_1(tmp_path, mock, pauses):
    mock_deployment(mock)
    mock.post(SERVER_URL, body=requests.ConnectionError("Connection refused"))
    _prepared(tmp_path, 2)

    result = _invoke(tmp_path, "--target", "remote", "--deployment-id", DEPLOYMENT_ID)

    assert result.exit_code == 1
    assert "did not answer" in result.stderr
    assert all(s not in result.stderr for s in SECRETS)


def test_the_cli_without_a_deployment_says_how_to_get_one(tmp_path, mock):
    _prepared(tmp_path, 1)
    result = _invoke(tmp_path, "--target", "remote")
    assert result.exit_code == 1
    assert "Error: no deployment to use" in result.stderr
    assert not mock.calls


@pytest.mark.parametrize(
    "args",
    [
        ["--target", "remote", "--address", "127.0.0.1:9"],
        ["--deployment-id", DEPLOYMENT_ID],
    ],
)
def test_options_of_the_other_target_are_usage_errors(tmp_path, args):
    result = _invoke(tmp_path, *args)
    assert result.exit_code == 2
