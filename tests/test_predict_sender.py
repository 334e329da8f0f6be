"""The one sending path: answers, retries, errors (HTTP faked with responses)."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from drtool.errors import AuthError, ConnectionFailure
from drtool.predict.chunks import Chunk
from drtool.predict.sender import RetryPolicy, Sender
from drtool.predict.targets import Target

URL = "http://127.0.0.1:9/predictUnstructured/"


def answer(ids, error_ids=()):
    rows = []
    for row_id in ids:
        if row_id in error_ids:
            rows.append({"id": row_id, "error": "bad image"})
        else:
            rows.append(
                {"id": row_id, "label": "1", "probabilities": {"0": 0.2, "1": 0.8}}
            )
    return {"predictions": rows}


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def sender(sleeps):
    target = Target(name="test server", url=URL, secret_headers={"X-Key": "s3cret"})
    return Sender(
        target, timeout=5, policy=RetryPolicy(attempts=4), sleep=sleeps.append
    )


CHUNK = Chunk(ids=["a", "b"], body=b"id,img\na,QQ==\nb,QQ==\n")


@responses.activate
def test_a_good_answer_gives_one_result_per_row_in_order(sender):
    responses.post(URL, json=answer(["b", "a"]))
    results = sender.send(CHUNK)

    assert [r.id for r in results] == ["a", "b"]
    assert all(r.ok and r.label == "1" for r in results)
    assert results[0].probabilities == {"0": 0.2, "1": 0.8}
    sent = responses.calls[0].request
    assert sent.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert sent.headers["X-Key"] == "s3cret"
    assert sent.body == CHUNK.body


@responses.activate
def test_a_row_the_model_rejects_fails_alone(sender):
    responses.post(URL, json=answer(["a", "b"], error_ids={"b"}))
    a, b = sender.send(CHUNK)
    assert a.ok
    assert not b.ok and b.error == "bad image"


@responses.activate
def test_429_waits_as_retry_after_says_then_succeeds(sender, sleeps):
    responses.post(URL, status=429, headers={"Retry-After": "7"}, json={})
    responses.post(URL, json=answer(["a", "b"]))
    results = sender.send(CHUNK)

    assert all(r.ok for r in results)
    assert sleeps == [7.0]
    assert len(responses.calls) == 2


@pytest.mark.parametrize("status", [502, 503, 504])
@responses.activate
def test_gateway_errors_back_off_and_retry(sender, sleeps, status):
    responses.post(URL, status=status, body="busy")
    responses.post(URL, status=status, body="busy")
    responses.post(URL, json=answer(["a", "b"]))
    assert all(r.ok for r in sender.send(CHUNK))
    assert len(sleeps) == 2 and sleeps[0] <= 0.5 and sleeps[1] <= 1.0


@pytest.mark.parametrize("status", [400, 404, 413, 422, 500])
@responses.activate
def test_other_errors_are_not_retried_and_fail_the_rows_with_the_message(
    sender, sleeps, status
):
    responses.post(URL, status=status, json={"message": "columns are wrong"})
    results = sender.send(CHUNK)

    assert len(responses.calls) == 1 and sleeps == []
    assert [r.error for r in results] == [f"HTTP {status}: columns are wrong"] * 2


@pytest.mark.parametrize("status", [401, 403])
@responses.activate
def test_rejected_credentials_stop_the_run_without_showing_them(sender, status):
    responses.post(URL, status=status, json={"message": "Invalid API token"})
    with pytest.raises(AuthError) as caught:
        sender.send(CHUNK)
    assert "test server" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
def test_no_answer_is_retried_then_reported_with_the_row_ids(sender, sleeps):
    for _ in range(4):
        responses.post(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(ConnectionFailure) as caught:
        sender.send(CHUNK)
    assert len(responses.calls) == 4 and len(sleeps) == 3
    assert "id a" in str(caught.value) and "resume" in str(caught.value)


@responses.activate
def test_a_timeout_counts_as_no_answer(sender):
    responses.post(URL, body=requests.Timeout("read timed out"))
    responses.post(URL, json=answer(["a", "b"]))
    assert all(r.ok for r in sender.send(CHUNK))


@responses.activate
def test_every_request_has_a_timeout(sender, monkeypatch):
    seen = {}
    original = requests.Session.send

    def spy(self, request, **kwargs):
        seen["timeout"] = kwargs.get("timeout")
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", spy)
    responses.post(URL, json=answer(["a", "b"]))
    sender.send(CHUNK)
    assert seen["timeout"] == 5


@responses.activate
def test_an_answer_that_is_not_the_contract_fails_the_rows(sender):
    responses.post(URL, body="<html>oops</html>", content_type="text/html")
    results = sender.send(CHUNK)
    assert all("unexpected answer" in r.error for r in results)


@responses.activate
def test_a_row_missing_from_the_answer_fails_by_name(sender):
    responses.post(URL, body=json.dumps(answer(["a"])), content_type="application/json")
    a, b = sender.send(CHUNK)
    assert a.ok and "no prediction for this id" in b.error


def test_an_oversized_row_fails_without_a_request(sender):
    (result,) = sender.send(Chunk(ids=["huge"], body=b"", oversized=True))
    assert result.id == "huge" and "too large" in result.error


def test_the_target_never_shows_its_secret_headers():
    target = Target(
        name="t", url=URL, secret_headers={"Authorization": "Bearer s3cret"}
    )
    assert "s3cret" not in repr(target) and "s3cret" not in target.describe()
