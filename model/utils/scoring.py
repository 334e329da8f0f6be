"""Score one /predictUnstructured/ request: CSV rows in, JSON predictions out.

Request body: CSV with the header ``id,img,x1,y1,x2,y2`` (other columns are
ignored). Response: ``{"predictions": [...]}`` with exactly one entry per
row, in row order, either

    {"id": "...", "label": "1", "probabilities": {"0": 0.12, "1": 0.88}}

or, for a row that cannot be scored,

    {"id": "...", "error": "row 3 (id ...): img is not valid base64"}

A body that is not a usable CSV at all raises ``RequestError``, which the
hook turns into HTTP 422.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from utils.loading import LoadedModel
from utils.preprocessing import BOX_COLUMNS, Box, InputError, parse_box, prepare

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "img", *BOX_COLUMNS)
HEADER = ",".join(REQUIRED_COLUMNS)

# One base64 image is far longer than the csv module's default field limit
# of 128 KiB; DataRobot caps a request at 50 MB, so 2**31 - 1 never binds.
csv.field_size_limit(2**31 - 1)


class RequestError(ValueError):
    """The body as a whole cannot be read as the expected CSV."""


@dataclass(frozen=True)
class Row:
    """One CSV row as sent; ``number`` counts data rows from 1."""

    number: int
    id: str
    cells: dict[str | None, Any]


@dataclass(frozen=True)
class PreparedRow:
    """A row that passed its checks, with its place in the response."""

    index: int
    row: Row
    box: Box
    model_input: np.ndarray


@dataclass(frozen=True)
class ScoredRow:
    prepared: PreparedRow
    probabilities: np.ndarray


def score_request(
    loaded: LoadedModel, data: str | bytes, charset: str | None, mlops: Any = None
) -> str:
    """Score every row of a request body and return the response JSON."""
    started = time.perf_counter()
    rows = read_rows(body_text(data, charset))
    entries, prepared = prepare_rows(rows, loaded)

    scored = predict_batch(loaded, prepared)
    for result in scored:
        entries[result.prepared.index] = prediction_entry(result, loaded.class_labels)

    elapsed_ms = (time.perf_counter() - started) * 1000.0
    if mlops is not None:
        report_to_mlops(mlops, scored, loaded.class_labels, elapsed_ms)
    return json.dumps({"predictions": entries})


def prepare_rows(
    rows: list[Row], loaded: LoadedModel
) -> tuple[list[dict[str, Any]], list[PreparedRow]]:
    """Prepare each row; bad rows get their error entry in place at once."""
    entries: list[dict[str, Any]] = []
    prepared: list[PreparedRow] = []
    for index, row in enumerate(rows):
        try:
            box, model_input = prepare_row(row, loaded)
        except InputError as exc:
            entries.append(error_entry(row, str(exc)))
            continue
        prepared.append(PreparedRow(index, row, box, model_input))
        entries.append({})  # replaced once the whole batch is predicted
    return entries, prepared


def body_text(data: str | bytes, charset: str | None) -> str:
    """Return the body as text: DRUM decodes text/* bodies, not others."""
    if isinstance(data, str):
        return data
    encoding = charset or "utf-8"
    try:
        return data.decode(encoding)
    except LookupError:
        raise RequestError(f"unknown charset {encoding!r} in Content-Type") from None
    except UnicodeDecodeError:
        raise RequestError(
            f"the body is not {encoding} text; send a CSV with the header "
            f"{HEADER} as text/csv; charset=utf-8"
        ) from None


def read_rows(text: str) -> list[Row]:
    """Parse the CSV body, checking its header; rows keep their own faults."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise RequestError(
            f"the body is empty; expected a CSV with the header {HEADER}"
        )
    try:
        records = [r for r in csv_records(text) if r and r != [""]]
        header = [name.strip() for name in records[0]] if records else []
        check_header(header)
        rows = [
            # The id goes back exactly as sent: the client joins on it.
            Row(number, cells.get("id") or "", cells)
            for number, cells in enumerate(
                (line_up(header, record) for record in records[1:]), start=1
            )
        ]
    except csv.Error as exc:
        raise RequestError(f"the body is not valid CSV: {exc}") from None
    if not rows:
        raise RequestError(f"the CSV has a header but no rows; expected {HEADER}")
    return rows


def csv_records(text: str) -> Iterable[list[str]]:
    """Split a CSV body into records of cells.

    Without a quote character anywhere, a line is a record and a comma a
    separator, and splitting is about ten times faster than the csv module on
    cells of a few hundred kB (base64 images): a fifth of the model's time per
    request otherwise. With quotes, the csv module reads the body strictly.
    """
    if '"' in text:
        return csv.reader(io.StringIO(text, newline=""), strict=True)
    return (line.removesuffix("\r").split(",") for line in text.split("\n"))


def line_up(header: list[str], record: list[str]) -> dict[str | None, Any]:
    """Map a record's cells to the header, the way csv.DictReader does.

    Surplus cells go under the key None, missing ones are None: either marks
    a row whose cells no longer line up with the header.
    """
    cells: dict[str | None, Any] = dict(zip(header, record, strict=False))
    if len(record) > len(header):
        cells[None] = record[len(header) :]
    for name in header[len(record) :]:
        cells[name] = None
    return cells


def check_header(header: list[str]) -> None:
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise RequestError(
            f"the CSV lacks the column(s) {', '.join(missing)}; its header must "
            f"include {HEADER}"
        )


def predict_batch(loaded: LoadedModel, prepared: list[PreparedRow]) -> list[ScoredRow]:
    """Predict every good row of the request in one batch."""
    if not prepared:
        return []
    batch = np.stack([p.model_input for p in prepared])
    probabilities = loaded.probabilities(batch)
    return [ScoredRow(p, q) for p, q in zip(prepared, probabilities, strict=True)]


def prediction_entry(scored: ScoredRow, labels: tuple[str, ...]) -> dict[str, Any]:
    # Ties go to the first label: for a sigmoid, p = 0.5 is not positive.
    best = int(np.argmax(scored.probabilities))
    return {
        "id": scored.prepared.row.id,
        "label": labels[best],
        "probabilities": {
            label: float(p)
            for label, p in zip(labels, scored.probabilities, strict=True)
        },
    }


def prepare_row(row: Row, loaded: LoadedModel) -> tuple[Box, np.ndarray]:
    """Check one row and turn it into a model input; InputError says why not."""
    if None in row.cells or None in row.cells.values():
        # csv puts surplus cells under the key None and fills missing ones
        # with None: the cells no longer line up with the header.
        raise InputError("the row does not have one cell per header column")
    if not row.id.strip():
        raise InputError("id is empty")
    box = parse_box(row.cells)
    return box, prepare(row.cells["img"], box, loaded.spec)


def error_entry(row: Row, reason: str) -> dict[str, Any]:
    return {"id": row.id, "error": f"row {row.number} (id {row.id!r}): {reason}"}


def report_to_mlops(
    mlops: Any, scored: list[ScoredRow], labels: tuple[str, ...], elapsed_ms: float
) -> None:
    """Report the good rows to DataRobot's embedded MLOps monitoring.

    A reporting failure is logged, not raised: the predictions are already
    made and the client should still get them.
    """
    try:
        mlops.report_deployment_stats(len(scored), elapsed_ms)
        if scored:
            mlops.report_predictions_data(**predictions_data(scored, labels))
    except Exception as exc:  # any failure of the monitoring library
        logger.warning("MLOps reporting failed: %s: %s", type(exc).__name__, exc)


def predictions_data(scored: list[ScoredRow], labels: tuple[str, ...]) -> dict:
    """Build report_predictions_data's arguments: boxes as the features."""
    ids = [result.prepared.row.id for result in scored]
    if len(set(ids)) != len(ids):
        # MLOps refuses repeated association ids; report without them.
        logger.warning("repeated ids in one request: reported without association ids")
        ids = None
    features = pd.DataFrame(
        [[getattr(r.prepared.box, column) for column in BOX_COLUMNS] for r in scored],
        columns=list(BOX_COLUMNS),
    )
    return {
        "features_df": features,
        "predictions": [r.probabilities.tolist() for r in scored],
        "association_ids": ids,
        "class_names": list(labels),
    }
