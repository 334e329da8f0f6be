"""Send one chunk of rows to a target and turn the answer into row results.

One sending path serves every target. It retries only what is safe to repeat
(no answer at all, 429 and 502/503/504: a prediction has no side effect on the
model), backs off exponentially up to a cap, honours Retry-After, and times
out every request. A 401 or 403 stops the whole run: every other request
would fail the same way.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from drtool.errors import AuthError, ConnectionFailure
from drtool.predict.chunks import Chunk
from drtool.predict.targets import Target

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is tried again."""

    attempts: int = 6
    first_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Return the pause before try ``attempt + 1`` (attempt counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = self.first_delay * 2 ** (attempt - 1)
        # Jitter spreads out clients that failed together.
        return min(backoff, self.max_delay) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class RowResult:
    """The outcome of one row: a label and probabilities, or an error."""

    id: str
    label: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


class Sender:
    """Posts chunks to one target; safe to use from several threads."""

    def __init__(
        self,
        target: Target,
        *,
        timeout: float,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._local = threading.local()

    def send(self, chunk: Chunk) -> list[RowResult]:
        """Send ``chunk`` and return one result per row, in the chunk's order."""
        if chunk.oversized:
            return [RowResult(id=chunk.ids[0], error=self._oversized_message())]
        response = self._post_with_retries(chunk)
        if response.status_code in AUTH_STATUSES:
            raise AuthError(
                f"{self.target.describe()} rejected the credentials "
                f"(HTTP {response.status_code}). Check DATAROBOT_API_TOKEN and "
                f"the deployment's access."
            )
        if response.status_code != 200:
            reason = f"HTTP {response.status_code}: {server_message(response)}"
            return [RowResult(id=row_id, error=reason) for row_id in chunk.ids]
        return parse_predictions(response, chunk.ids)

    def _post_with_retries(self, chunk: Chunk) -> requests.Response:
        for attempt in range(1, self.policy.attempts + 1):
            last_try = attempt == self.policy.attempts
            try:
                response = self._session().post(
                    self.target.url,
                    data=chunk.body,
                    headers=self.target.headers(),
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                if last_try:
                    raise self._no_answer(chunk, exc) from None
                self._pause(attempt, None, f"no answer ({type(exc).__name__})")
                continue
            if response.status_code not in RETRY_STATUSES or last_try:
                return response
            wait_hint = retry_after_seconds(response)
            self._pause(attempt, wait_hint, f"HTTP {response.status_code}")
        raise AssertionError("unreachable: the last try returns or raises")

    def _pause(self, attempt: int, retry_after: float | None, why: str) -> None:
        delay = self.policy.delay(attempt, retry_after)
        log.info("%s: %s; trying again in %.1f s", self.target.name, why, delay)
        self._sleep(delay)

    def _no_answer(self, chunk: Chunk, exc: Exception) -> ConnectionFailure:
        first, count = chunk.ids[0], len(chunk.ids)
        return ConnectionFailure(
            f"{self.target.describe()} did not answer after "
            f"{self.policy.attempts} tries ({type(exc).__name__}), sending "
            f"{count} row(s) from id {first}. Finished rows are kept; run the "
            f"same command again to resume."
        )

    def _oversized_message(self) -> str:
        return "row too large: alone it exceeds the request size limit"

    def _session(self) -> requests.Session:
        # One session per thread: connection reuse without sharing a pool
        # across threads.
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session


def parse_predictions(response: requests.Response, ids: list[str]) -> list[RowResult]:
    """Read the model's JSON answer into one result per requested id."""
    try:
        entries = response.json()["predictions"]
        by_id = {str(entry["id"]): entry for entry in entries}
    except (ValueError, KeyError, TypeError):
        reason = f"unexpected answer: {response.text[:MESSAGE_LIMIT]!r}"
        return [RowResult(id=row_id, error=reason) for row_id in ids]
    return [_row_result(row_id, by_id.get(row_id)) for row_id in ids]


def _row_result(row_id: str, entry: dict[str, Any] | None) -> RowResult:
    if entry is None:
        return RowResult(id=row_id, error="the answer has no prediction for this id")
    if entry.get("error"):
        return RowResult(id=row_id, error=str(entry["error"]))
    try:
        probabilities = {str(k): float(v) for k, v in entry["probabilities"].items()}
        return RowResult(
            id=row_id, label=str(entry["label"]), probabilities=probabilities
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return RowResult(id=row_id, error=f"malformed prediction: {entry!r:.200}")


def server_message(response: requests.Response) -> str:
    """Return the message a server put in an error answer, shortened."""
    try:
        body = response.json()
        message = body.get("message") if isinstance(body, dict) else None
        text = str(message) if message else json.dumps(body)
    except ValueError:
        text = response.text.strip() or response.reason or ""
    return text[:MESSAGE_LIMIT]


def retry_after_seconds(response: requests.Response) -> float | None:
    """Read Retry-After (seconds or an HTTP date); None when absent or bad."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
