"""Score predictions against actuals on this machine: the local target's report.

The two files are joined on ``id``. A row present on one side only, or whose
prediction failed, is counted and shown, never dropped silently.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from drtool.errors import InputError
from drtool.predict.output import STATUS_OK

# How many unmatched ids the report names; the counts are always complete.
SAMPLE_IDS = 5


@dataclass
class ScoreReport:
    """Accuracy figures of one predictions file against one actuals file."""

    labels: list[str]
    positive_label: str
    predictions_file: Path
    actuals_file: Path
    scored: int = 0
    correct: int = 0
    # confusion[actual][predicted] = rows
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    actuals_without_prediction: int = 0
    failed_predictions: int = 0
    predictions_without_actual: int = 0
    sample_unmatched_ids: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None

    @property
    def sensitivity(self) -> float | None:
        """Share of actual positives predicted positive (recall, true positive rate)."""
        row = self.confusion.get(self.positive_label, {})
        positives = sum(row.values())
        return row.get(self.positive_label, 0) / positives if positives else None

    @property
    def specificity(self) -> float | None:
        """Share of actual negatives predicted negative (true negative rate)."""
        negatives = correct = 0
        for actual, row in self.confusion.items():
            if actual == self.positive_label:
                continue
            negatives += sum(row.values())
            correct += sum(n for p, n in row.items() if p != self.positive_label)
        return correct / negatives if negatives else None

    def to_dict(self) -> dict[str, object]:
        return {
            "predictions_file": str(self.predictions_file),
            "actuals_file": str(self.actuals_file),
            "labels": self.labels,
            "positive_label": self.positive_label,
            "scored": self.scored,
            "accuracy": self.accuracy,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "confusion_matrix": self.confusion,
            "actuals_without_prediction": self.actuals_without_prediction,
            "failed_predictions": self.failed_predictions,
            "predictions_without_actual": self.predictions_without_actual,
            "sample_unmatched_ids": self.sample_unmatched_ids,
        }


def score_predictions(
    predictions_file: Path, actuals_file: Path, labels: list[str]
) -> ScoreReport:
    """Join predictions and actuals on id and compute the report."""
    predicted = _read_predictions(predictions_file)
    report = ScoreReport(
        labels=labels,
        positive_label=labels[-1],
        predictions_file=predictions_file,
        actuals_file=actuals_file,
        confusion={a: {p: 0 for p in labels} for a in labels},
    )
    matched: set[str] = set()
    for row_id, actual in _read_actuals(actuals_file, labels):
        matched.add(row_id)
        _score_one(report, row_id, actual, predicted.get(row_id))
    report.predictions_without_actual = len(predicted.keys() - matched)
    return report


def _score_one(
    report: ScoreReport, row_id: str, actual: str, prediction: str | None
) -> None:
    if prediction is None:
        report.actuals_without_prediction += 1
        if len(report.sample_unmatched_ids) < SAMPLE_IDS:
            report.sample_unmatched_ids.append(row_id)
    elif prediction == "":
        report.failed_predictions += 1
    else:
        report.scored += 1
        report.correct += prediction == actual
        report.confusion[actual][prediction] = (
            report.confusion[actual].get(prediction, 0) + 1
        )


def _read_predictions(path: Path) -> dict[str, str]:
    """Return id -> predicted label; a failed row maps to ''."""
    predicted: dict[str, str] = {}
    for _, row in _read_csv(path, ("id", "prediction", "status")):
        predicted[row["id"]] = row["prediction"] if row["status"] == STATUS_OK else ""
    return predicted


def _read_actuals(path: Path, labels: list[str]) -> Iterator[tuple[str, str]]:
    for line, row in _read_csv(path, ("id", "actual")):
        if row["actual"] not in labels:
            raise InputError(
                f"{path} line {line}: actual {row['actual']!r} is not one of "
                f"model.class_labels {labels} in config.yaml."
            )
        yield row["id"], row["actual"]


def _read_csv(
    path: Path, needed: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputError(f"{path} does not exist.") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: no {missing[0]!r} column in the header.")
        yield from enumerate(reader, start=2)
