"""Send actuals.csv to a DataRobot deployment, in batches, resumably.

DataRobot matches an actual to a prediction by its association id, so the
deployment must name an association id column before anything is worth
sending: that is checked first. The file is then read twice, streaming: once
to check every line and fingerprint the file, so a bad line fails before any
request, and once to send it.

Batches go one at a time, each waited on until DataRobot has processed it.

Rejections: a batch DataRobot refuses (a 4xx answer, or a job that ends in
error) counts its rows as rejected, with the server's message, and the run
goes on, because batches are independent and the cause is usually in that
batch's rows. ``MAX_REJECTED_IN_A_ROW`` rejections in a row stop the run: the
cause is then more likely the deployment than the data. Rejected credentials,
a missing deployment, a server error, no answer and a wait past its deadline
stop the run at once: each would repeat on every batch, and a rerun resumes.

Resume: each accepted batch is recorded at once in a journal beside the file
(see ``SubmissionJournal``). A rerun with the same file and deployment sends
only the rows not recorded there: after an interruption the accepted batches
are not sent again, after a complete run nothing is. Rejected rows are sent
again. Only a batch in flight when a run stopped can reach DataRobot twice.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datarobot as dr
import requests
from datarobot.errors import (
    AsyncFailureError,
    AsyncProcessUnsuccessfulError,
    AsyncTimeoutError,
    ClientError,
    ServerError,
)

from drtool.atomic import atomic_writer
from drtool.errors import ConfigError, InputError, RemoteError, WaitTimeout
from drtool.predict.remote import connect, fetch_deployment
from drtool.release.sdk import Remote, translate
from drtool.settings import Settings

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "actual")
# DataRobot refuses longer association ids.
MAX_ASSOCIATION_ID_LENGTH = 128
MAX_REJECTED_IN_A_ROW = 3
JOURNAL_FORMAT = 1
# Statuses that say the batch itself was refused; any other stops the run.
REJECTING_STATUSES = frozenset({400, 409, 413, 422})
MESSAGE_LIMIT = 300

# Sorts after any (start, end) pair with the same start.
_AFTER_ANY_END = float("inf")

TRUE_WORDS = frozenset({"true", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "0", "no", "n"})


@dataclass(frozen=True)
class Actual:
    """One line of actuals.csv, in the form ``Deployment.submit_actuals`` takes."""

    index: int
    association_id: str
    actual_value: str
    was_acted_on: bool | None = None
    timestamp: datetime | None = None

    def to_sdk(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "association_id": self.association_id,
            "actual_value": self.actual_value,
        }
        # The SDK leaves out a field that is absent or None.
        if self.was_acted_on is not None:
            item["was_acted_on"] = self.was_acted_on
        if self.timestamp is not None:
            item["timestamp"] = self.timestamp
        return item


@dataclass
class Rejection:
    """A batch DataRobot refused, and why."""

    rows: int
    first_id: str
    last_id: str
    message: str


@dataclass
class ActualsReport:
    """What a submission did; counts are rows of the actuals file."""

    deployment_id: str
    actuals_file: Path
    journal: Path
    association_id_column: str = ""
    rows: int = 0
    accepted: int = 0
    accepted_earlier: int = 0
    rejected: int = 0
    not_sent: int = 0
    batches_sent: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def accepted_total(self) -> int:
        return self.accepted + self.accepted_earlier

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "actuals_file": str(self.actuals_file),
            "journal": str(self.journal),
            "association_id_column": self.association_id_column,
            "rows": self.rows,
            "accepted": self.accepted,
            "accepted_earlier": self.accepted_earlier,
            "accepted_total": self.accepted_total,
            "rejected": self.rejected,
            "not_sent": self.not_sent,
            "batches_sent": self.batches_sent,
            "rejections": [vars(r) for r in self.rejections],
        }


def submit_actuals(
    settings: Settings,
    deployment_id: str,
    actuals_path: Path,
    on_progress: Callable[[int], None] | None = None,
) -> ActualsReport:
    """Send the actuals of ``actuals_path`` to deployment ``deployment_id``.

    ``on_progress`` is called with the number of rows each finished batch
    (accepted, rejected or skipped as already accepted) accounts for.
    """
    remote = connect(settings)
    deployment = fetch_deployment(remote, deployment_id)
    column = association_id_column(remote, deployment, settings)

    fingerprint, rows = check_actuals_file(actuals_path, settings.model.class_labels)
    journal = SubmissionJournal.load(
        journal_path(actuals_path), deployment_id, fingerprint, rows
    )
    report = ActualsReport(
        deployment_id=deployment_id,
        actuals_file=actuals_path,
        journal=journal.path,
        association_id_column=column,
        rows=rows,
        accepted_earlier=journal.accepted_rows,
    )
    if on_progress and journal.accepted_rows:
        on_progress(journal.accepted_rows)
    batches = _batches(
        read_actuals(actuals_path, settings.model.class_labels),
        journal,
        settings.actuals.batch_size,
    )
    _send_batches(_Sending(remote, deployment, journal, report), batches, on_progress)
    return report


def association_id_column(
    remote: Remote, deployment: dr.Deployment, settings: Settings
) -> str:
    """Return the deployment's association id column; refuse when it has none."""
    with remote.errors(f"reading the settings of deployment {deployment.id}"):
        # Annotated as str in the SDK, but it is a dict (or None when unset).
        found: Any = deployment.get_association_id_settings()
    columns = (found or {}).get("column_names") or []
    if not columns:
        raise ConfigError(
            f"deployment {deployment.id} has no association id column, so "
            f"DataRobot cannot match actuals to predictions. Run `drtool release`, "
            f"which sets it to deployment.association_id_column of config.yaml "
            f"({settings.deployment.association_id_column!r}), or set it in "
            f"DataRobot under the deployment's Settings > Accuracy > Association "
            f"ID. Set it before the deployment serves predictions: DataRobot "
            f"cannot change it afterwards."
        )
    expected = settings.deployment.association_id_column
    if columns[0] != expected:
        log.warning(
            "Deployment %s matches actuals on column %r, not on %r as "
            "deployment.association_id_column of config.yaml says; the ids of "
            "actuals.csv must be the values predictions carried in %r.",
            deployment.id,
            columns[0],
            expected,
            columns[0],
        )
    return str(columns[0])


# --- the actuals file ---------------------------------------------------------


def check_actuals_file(path: Path, class_labels: list[str]) -> tuple[str, int]:
    """Check every line of ``path``; return its SHA-256 and its number of rows."""
    rows = sum(1 for _ in read_actuals(path, class_labels))
    if rows == 0:
        raise InputError(f"{path} has no actuals; make it with `drtool load`.")
    return _sha256(path), rows


def read_actuals(path: Path, class_labels: list[str]) -> Iterator[Actual]:
    """Yield the actuals of ``path`` one by one, checked, in file order."""
    handle = _open(path)
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"{path}: no {missing[0]!r} column in the header; the file needs "
                f"id,actual and may have was_acted_on and timestamp."
            )
        seen: set[str] = set()
        for index, row in enumerate(reader):
            actual = _parse_row(row, index, class_labels, f"{path} line {index + 2}")
            if actual.association_id in seen:
                raise InputError(
                    f"{path} line {index + 2}: id {actual.association_id!r} "
                    f"appears twice; each prediction has one actual."
                )
            seen.add(actual.association_id)
            yield actual


def _open(path: Path) -> Any:
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputError(
            f"{path} does not exist; make it with `drtool load`, or pass --actuals."
        ) from None


def _parse_row(
    row: dict[str, str | None], index: int, class_labels: list[str], where: str
) -> Actual:
    row_id = (row.get("id") or "").strip()
    if not row_id:
        raise InputError(f"{where}: the row has no id.")
    if len(row_id) > MAX_ASSOCIATION_ID_LENGTH:
        raise InputError(
            f"{where}: id is {len(row_id)} characters long; DataRobot takes "
            f"association ids of at most {MAX_ASSOCIATION_ID_LENGTH}."
        )
    # Classification actuals are labels, sent as strings.
    value = (row.get("actual") or "").strip()
    if value not in class_labels:
        raise InputError(
            f"{where}: actual {value!r} is not one of model.class_labels "
            f"{class_labels} in config.yaml."
        )
    return Actual(
        index=index,
        association_id=row_id,
        actual_value=value,
        was_acted_on=_parse_flag(row.get("was_acted_on"), where),
        timestamp=_parse_timestamp(row.get("timestamp"), where),
    )


def _parse_flag(text: str | None, where: str) -> bool | None:
    word = (text or "").strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InputError(f"{where}: was_acted_on {text!r} is not true or false.")


def _parse_timestamp(text: str | None, where: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        # A time without a zone is UTC, as DataRobot reads it; the SDK adds it.
        return datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{where}: timestamp {text!r} is not an ISO 8601 / RFC 3339 time, "
            f"e.g. 2024-05-01T13:45:00Z."
        ) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --- sending ------------------------------------------------------------------


def _batches(
    actuals: Iterator[Actual], journal: SubmissionJournal, size: int
) -> Iterator[list[Actual]]:
    """Group the actuals not yet accepted into batches of at most ``size``."""
    batch: list[Actual] = []
    for actual in actuals:
        if journal.is_accepted(actual.index):
            continue
        batch.append(actual)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class _Sending:
    """What sending the batches of one run needs and updates."""

    remote: Remote
    deployment: dr.Deployment
    journal: SubmissionJournal
    report: ActualsReport


def _send_batches(
    run: _Sending,
    batches: Iterator[list[Actual]],
    on_progress: Callable[[int], None] | None,
) -> None:
    report = run.report
    rejected_in_a_row = 0
    for batch in batches:
        if rejected_in_a_row == MAX_REJECTED_IN_A_ROW:
            report.not_sent += len(batch)
            continue
        rejection = _send_one(run, batch)
        report.batches_sent += 1
        if rejection is None:
            run.journal.accept([a.index for a in batch])
            report.accepted += len(batch)
            rejected_in_a_row = 0
        else:
            report.rejected += len(batch)
            report.rejections.append(rejection)
            rejected_in_a_row += 1
        if on_progress:
            on_progress(len(batch))
    if report.not_sent:
        log.warning(
            "Stopped after %d rejected batches in a row; %d rows were not sent.",
            MAX_REJECTED_IN_A_ROW,
            report.not_sent,
        )


def _send_one(run: _Sending, batch: list[Actual]) -> Rejection | None:
    """Send one batch and wait for it; return why DataRobot refused it, if it did."""
    first, last = batch[0].association_id, batch[-1].association_id
    doing = f"sending actuals {first} to {last} to deployment {run.deployment.id}"
    log.info("Sending %d actuals (%s to %s)", len(batch), first, last)
    try:
        # One call per batch, each waited on: the journal records a batch
        # only once DataRobot has processed it.
        run.deployment.submit_actuals([a.to_sdk() for a in batch], len(batch))
    except ClientError as exc:
        if exc.status_code not in REJECTING_STATUSES:
            raise translate(exc, doing, run.remote.credentials) from None
        return Rejection(len(batch), first, last, _client_error_message(exc))
    except AsyncProcessUnsuccessfulError as exc:
        return Rejection(len(batch), first, last, str(exc)[:MESSAGE_LIMIT])
    except (ServerError, requests.RequestException) as exc:
        raise translate(exc, doing, run.remote.credentials) from None
    except AsyncTimeoutError:
        raise WaitTimeout(
            f"DataRobot had not processed the batch in time while {doing}. Run "
            f"the same command again: the accepted batches are not resent."
        ) from None
    except AsyncFailureError as exc:
        raise RemoteError(f"{doing}: {str(exc)[:MESSAGE_LIMIT]}") from None
    return None


def _client_error_message(exc: ClientError) -> str:
    body = exc.json if isinstance(exc.json, dict) else {}
    message = str(body.get("message") or exc)
    if body.get("errors"):
        message += f" {json.dumps(body['errors'])}"
    return f"HTTP {exc.status_code}: {message}"[:MESSAGE_LIMIT]


# --- the journal --------------------------------------------------------------


def journal_path(actuals_path: Path) -> Path:
    return actuals_path.with_name(actuals_path.name + ".submitted.json")


class SubmissionJournal:
    """The rows of one actuals file that one deployment has accepted.

    A JSON file, rewritten atomically after every accepted batch::

        {"format": 1, "deployment_id": "…", "actuals_file": "actuals.csv",
         "file_sha256": "…", "rows": 25001, "accepted_rows": 20000,
         "accepted_ranges": [[0, 20000]], "updated_at": "…"}

    ``accepted_ranges`` are half-open ranges of row numbers (0 is the first
    row under the header), so the record holds whatever the batch size.
    A record of another deployment or of another version of the file does not
    apply: every row is sent again, and the record is replaced.
    """

    def __init__(
        self, path: Path, deployment_id: str, file_sha256: str, rows: int
    ) -> None:
        self.path = path
        self.deployment_id = deployment_id
        self.file_sha256 = file_sha256
        self.rows = rows
        self.ranges: list[tuple[int, int]] = []

    @classmethod
    def load(
        cls, path: Path, deployment_id: str, file_sha256: str, rows: int
    ) -> SubmissionJournal:
        """Return the record for this file and deployment, empty if there is none."""
        journal = cls(path, deployment_id, file_sha256, rows)
        recorded = _read_json(path)
        if recorded is None:
            return journal
        if recorded.get("deployment_id") != deployment_id:
            log.warning(
                "%s records actuals sent to deployment %s, not %s; sending every row.",
                path,
                recorded.get("deployment_id"),
                deployment_id,
            )
        elif recorded.get("file_sha256") != file_sha256:
            log.warning(
                "%s records another version of the file; sending every row.", path
            )
        else:
            journal.ranges = _checked_ranges(recorded.get("accepted_ranges"), path)
        return journal

    @property
    def accepted_rows(self) -> int:
        return sum(end - start for start, end in self.ranges)

    def is_accepted(self, index: int) -> bool:
        # The ranges are merged and sorted: the one that could hold ``index``
        # is the last starting at or before it.
        place = bisect.bisect_right(self.ranges, (index, _AFTER_ANY_END)) - 1
        return place >= 0 and index < self.ranges[place][1]

    def accept(self, indexes: list[int]) -> None:
        """Record the rows ``indexes`` as accepted, on disk before returning."""
        self.ranges = _merged(self.ranges + _runs(indexes))
        document = {
            "format": JOURNAL_FORMAT,
            "deployment_id": self.deployment_id,
            "actuals_file": self.path.name.removesuffix(".submitted.json"),
            "file_sha256": self.file_sha256,
            "rows": self.rows,
            "accepted_rows": self.accepted_rows,
            "accepted_ranges": [list(r) for r in self.ranges],
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with atomic_writer(self.path) as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("format") != JOURNAL_FORMAT:
        raise InputError(
            f"{path} is not a record drtool can read; delete it to send every "
            f"row again."
        )
    return document


def _checked_ranges(value: Any, path: Path) -> list[tuple[int, int]]:
    try:
        ranges = [(int(start), int(end)) for start, end in value]
    except (TypeError, ValueError):
        raise InputError(
            f"{path}: accepted_ranges is malformed; delete the file to send every "
            f"row again."
        ) from None
    return _merged(ranges)


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Turn row numbers into half-open ranges of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for index in sorted(indexes):
        if runs and runs[-1][1] == index:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
