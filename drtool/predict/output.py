"""The predictions file, and the journal that makes an interrupted run resumable.

While a run goes on, every finished row is appended to ``<output>.partial``
and flushed, so Ctrl-C, a crash or a lost connection loses at most the
requests in flight. The predictions file itself appears only at the end, whole,
in input order, by an atomic rename: nobody ever reads a half-written one.
A rerun with the same output reads the journal and sends only the rows that
have no prediction yet; rows that failed are tried again.

Known shortcomings: the journal matches rows by id only, so a rerun after the
input changed under the same ids (boxes fixed, `drtool load` run again) keeps
the older predictions of those ids; delete ``<output>.partial`` to start over.
Recording a digest of each sent row beside its id would fix that. Nor is the
output locked: two runs on the same output at once share one journal.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from drtool.atomic import atomic_writer
from drtool.errors import InputError
from drtool.predict.sender import RowResult

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_FAILED = "failed"


def columns(class_labels: list[str]) -> list[str]:
    """Return the header of a predictions file for these class labels."""
    probabilities = [f"probability_{label}" for label in class_labels]
    return ["id", "prediction", *probabilities, "status", "error"]


def to_record(result: RowResult, class_labels: list[str]) -> list[str]:
    """Return ``result`` as one row of the predictions file."""
    if not result.ok:
        blanks = [""] * len(class_labels)
        return [result.id, "", *blanks, STATUS_FAILED, result.error]
    probabilities = [
        repr(result.probabilities.get(label, 0.0)) for label in class_labels
    ]
    return [result.id, result.label, *probabilities, STATUS_OK, ""]


def journal_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


class Journal:
    """Append-only record of finished rows, flushed after every request."""

    def __init__(self, output: Path, class_labels: list[str]) -> None:
        self.path = journal_path(output)
        self.class_labels = class_labels
        self.header = columns(class_labels)
        self._handle: TextIO | None = None
        self._writer: csv._writer | None = None  # type: ignore[name-defined]

    def finished_rows(self) -> dict[str, list[str]]:
        """Return the successful rows an earlier run recorded, by id."""
        if not self.path.exists():
            return {}
        with self.path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            if next(reader, None) != self.header:
                raise InputError(
                    f"{self.path} is left from a run with other class labels; "
                    f"delete it to start over."
                )
            done = {r[0]: r for r in reader if len(r) == len(self.header)}
        return {k: r for k, r in done.items() if r[-2] == STATUS_OK}

    def open(self, kept: Iterable[list[str]]) -> None:
        """Start the journal afresh with the rows ``kept`` from an earlier run."""
        # Rewritten atomically: a crash here must not lose the kept rows.
        with atomic_writer(self.path) as handle:
            fresh = csv.writer(handle, lineterminator="\n")
            fresh.writerow(self.header)
            fresh.writerows(kept)
        self._handle = self.path.open("a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")

    def record(self, results: list[RowResult]) -> None:
        assert self._writer is not None, "open() the journal first"
        self._writer.writerows(to_record(r, self.class_labels) for r in results)
        self._flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def _flush(self) -> None:
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())


def write_predictions(
    output: Path, header: list[str], ids_in_order: list[str], rows: dict[str, list[str]]
) -> None:
    """Write the predictions file atomically, one row per id, in input order."""
    with atomic_writer(output) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows[row_id] for row_id in ids_in_order)
    log.info("Wrote %s", output)
