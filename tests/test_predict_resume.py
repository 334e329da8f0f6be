"""A run writes its file atomically, and an interrupted run resumes."""

from __future__ import annotations

import csv
import json
import threading

import pytest
import requests
import responses

from drtool.errors import ConnectionFailure, InputError
from drtool.predict import SendOptions, predict_file
from drtool.predict.output import journal_path
from drtool.predict.sender import RetryPolicy
from drtool.predict.targets import Target
from tests.fake_model import write_prepared

URL = "http://127.0.0.1:9/predictUnstructured/"
TARGET = Target(name="test server", url=URL)
LABELS = ["0", "1"]
OPTIONS = SendOptions(rows_per_request=3, concurrency=1, policy=RetryPolicy(attempts=1))


def join_stray_senders() -> None:
    """Let request threads a stopped run left behind finish.

    On Ctrl-C or a lost connection drtool does not wait for the requests still
    in flight; in a test, one would otherwise reach the next run's mock.
    """
    for thread in threading.enumerate():
        if thread.name.startswith("predict"):
            thread.join(timeout=10)


@pytest.fixture(autouse=True)
def no_stray_senders():
    yield
    join_stray_senders()


def sent_ids(request) -> list[str]:
    lines = request.body.decode().splitlines()[1:]
    return [line.split(",")[0] for line in lines]


def good_answer(request):
    rows = [
        {"id": i, "label": "1", "probabilities": {"0": 0.1, "1": 0.9}}
        for i in sent_ids(request)
    ]
    return 200, {}, json.dumps({"predictions": rows})


def read_output(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


@responses.activate
def test_a_complete_run_writes_every_row_in_input_order(tmp_path):
    ids = write_prepared(tmp_path / "in.csv", 10)
    responses.add_callback(responses.POST, URL, callback=good_answer)
    report = predict_file(
        tmp_path / "in.csv", tmp_path / "out.csv", TARGET, LABELS, OPTIONS
    )

    rows = read_output(tmp_path / "out.csv")
    assert [r["id"] for r in rows] == ids
    assert list(rows[0]) == [
        "id",
        "prediction",
        "probability_0",
        "probability_1",
        "status",
        "error",
    ]
    assert rows[0]["prediction"] == "1" and rows[0]["status"] == "ok"
    assert float(rows[0]["probability_1"]) == 0.9
    assert (report.rows, report.succeeded, report.failed) == (10, 10, 0)
    assert report.requests == 4
    assert not journal_path(tmp_path / "out.csv").exists()


@responses.activate
def test_an_interrupted_run_leaves_no_output_and_the_rerun_sends_only_the_rest(
    tmp_path,
):
    ids = write_prepared(tmp_path / "in.csv", 10)
    calls = {"n": 0}

    def dies_on_third_request(request):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return good_answer(request)

    responses.add_callback(responses.POST, URL, callback=dies_on_third_request)
    with pytest.raises(KeyboardInterrupt):
        predict_file(tmp_path / "in.csv", tmp_path / "out.csv", TARGET, LABELS, OPTIONS)
    assert not (tmp_path / "out.csv").exists()
    assert journal_path(tmp_path / "out.csv").exists()

    report = _rerun(tmp_path)

    resent = [i for call in responses.calls for i in sent_ids(call.request)]
    # Rows 0-5 came back before the interruption. The request after the failed
    # one may also have finished by then, and is kept: then it is not resent.
    assert report.resumed in (6, 7)
    assert len(resent) == len(ids) - report.resumed
    assert set(resent) <= set(ids[6:])
    rows = read_output(tmp_path / "out.csv")
    assert [r["id"] for r in rows] == ids
    assert all(r["status"] == "ok" for r in rows)


def _rerun(tmp_path):
    join_stray_senders()
    responses.reset()
    responses.add_callback(responses.POST, URL, callback=good_answer)
    return predict_file(
        tmp_path / "in.csv", tmp_path / "out.csv", TARGET, LABELS, OPTIONS
    )


@responses.activate
def test_a_lost_connection_keeps_finished_rows_for_the_next_run(tmp_path):
    ids = write_prepared(tmp_path / "in.csv", 9)
    calls = {"n": 0}

    def connection_drops(request):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise requests.ConnectionError("network went away")
        return good_answer(request)

    responses.add_callback(responses.POST, URL, callback=connection_drops)
    with pytest.raises(ConnectionFailure):
        predict_file(tmp_path / "in.csv", tmp_path / "out.csv", TARGET, LABELS, OPTIONS)

    report = _rerun(tmp_path)
    resent = [i for call in responses.calls for i in sent_ids(call.request)]
    assert resent == ids[3:]
    assert report.resumed == 3 and report.succeeded == 9


@responses.activate
def test_failed_rows_are_written_with_their_reason_and_tried_again_next_time(
    tmp_path,
):
    write_prepared(tmp_path / "in.csv", 4)

    def rejects_row_2(request):
        rows = [
            {"id": i, "error": "bad image"}
            if i == "row-00002"
            else {"id": i, "label": "0", "probabilities": {"0": 0.7, "1": 0.3}}
            for i in sent_ids(request)
        ]
        return 200, {}, json.dumps({"predictions": rows})

    responses.add_callback(responses.POST, URL, callback=rejects_row_2)
    report = predict_file(
        tmp_path / "in.csv", tmp_path / "out.csv", TARGET, LABELS, OPTIONS
    )
    assert (report.succeeded, report.failed) == (3, 1)
    assert report.failures == [{"id": "row-00002", "error": "bad image"}]
    failed = [r for r in read_output(tmp_path / "out.csv") if r["status"] == "failed"]
    assert failed[0]["id"] == "row-00002" and failed[0]["error"] == "bad image"


@responses.activate
def test_a_label_outside_the_configured_labels_fails_the_row(tmp_path):
    write_prepared(tmp_path / "in.csv", 1)

    def odd_label(request):
        rows = [
            {"id": i, "label": "cat", "probabilities": {"cat": 1.0}}
            for i in sent_ids(request)
        ]
        return 200, {}, json.dumps({"predictions": rows})

    responses.add_callback(responses.POST, URL, callback=odd_label)
    report = predict_file(
        tmp_path / "in.csv", tmp_path / "out.csv", TARGET, LABELS, OPTIONS
    )
    assert report.failed == 1
    assert "model.class_labels" in report.failures[0]["error"]


def test_duplicate_ids_in_the_input_are_refused(tmp_path):
    (tmp_path / "in.csv").write_text("id,img\nr1,QQ==\nr1,QQ==\n")
    with pytest.raises(InputError, match="appears twice"):
        predict_file(tmp_path / "in.csv", tmp_path / "out.csv", TARGET, LABELS, OPTIONS)


def test_requests_finished_together_are_recorded_before_an_error_propagates():
    from concurrent.futures import Future

    from drtool.errors import ConnectionFailure as Lost
    from drtool.predict import _collect
    from drtool.predict.sender import RowResult

    finished, failed = Future(), Future()
    finished.set_result([RowResult(id="a", label="1", probabilities={"1": 1.0})])
    failed.set_exception(Lost("gone"))
    recorded = []
    for _ in range(20):  # set order varies: the good one is recorded whatever it is
        recorded.clear()
        with pytest.raises(Lost):
            _collect({failed, finished}, recorded.append)
        assert [r.id for results in recorded for r in results] == ["a"]


def test_an_output_that_is_the_input_is_refused_before_anything_is_sent(tmp_path):
    write_prepared(tmp_path / "in.csv", 2)
    before = (tmp_path / "in.csv").read_text()
    with pytest.raises(InputError, match="would overwrite it"):
        predict_file(tmp_path / "in.csv", tmp_path / "in.csv", TARGET, LABELS, OPTIONS)
    assert (tmp_path / "in.csv").read_text() == before


def test_an_output_folder_that_does_not_exist_is_named(tmp_path):
    write_prepared(tmp_path / "in.csv", 2)
    with pytest.raises(InputError, match="does not exist; create it first"):
        predict_file(
            tmp_path / "in.csv", tmp_path / "no" / "out.csv", TARGET, LABELS, OPTIONS
        )
