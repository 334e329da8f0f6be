"""`drtool submit-actuals`: the ground truth, scored here or sent to DataRobot."""

from __future__ import annotations

from pathlib import Path

import click

from drtool.cli.common import emit_json, settings_from
from drtool.scoring import ScoreReport, score_predictions


@click.command(name="submit-actuals")
@click.option(
    "--target",
    type=click.Choice(["local"]),
    default="local",
    show_default=True,
    help="local: score the predictions file against the actuals here.",
)
@click.option(
    "--actuals",
    "actuals_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Actuals (id,actual). Default: actuals.csv in data.dir of config.yaml.",
)
@click.option(
    "--predictions",
    "predictions_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Local target: predictions file. Default: predictions.csv beside the actuals.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def submit_actuals(
    ctx: click.Context,
    target: str,
    actuals_path: Path | None,
    predictions_path: Path | None,
    as_json: bool,
) -> None:
    """Send the actuals to the deployment, or score predictions against them.

    \b
    Example:
      drtool submit-actuals --target local
    """
    settings = settings_from(ctx)
    actuals_path = actuals_path or settings.data.dir / "actuals.csv"
    predictions_path = predictions_path or actuals_path.with_name("predictions.csv")
    report = score_predictions(
        predictions_path, actuals_path, settings.model.class_labels
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(format_score(report))


def format_score(report: ScoreReport) -> str:
    """Return the local actuals report as text."""
    lines = [
        f"Scored {report.scored} rows of {report.predictions_file} against "
        f"{report.actuals_file}.",
        f"Accuracy:    {_percent(report.accuracy)}",
        f"Sensitivity: {_percent(report.sensitivity)}  (positive class "
        f"{report.positive_label!r})",
        f"Specificity: {_percent(report.specificity)}",
        "",
        "Confusion matrix (rows: actual, columns: predicted):",
        *_matrix_lines(report),
        "",
        f"Actuals without a prediction:   {report.actuals_without_prediction}",
        f"Actuals whose prediction failed: {report.failed_predictions}",
        f"Predictions without an actual:  {report.predictions_without_actual}",
    ]
    if report.sample_unmatched_ids:
        lines.append("  e.g. " + ", ".join(report.sample_unmatched_ids))
    return "\n".join(lines)


def _matrix_lines(report: ScoreReport) -> list[str]:
    labels = report.labels
    width = max(8, *(len(label) + 2 for label in labels))
    head = " " * width + "".join(label.rjust(width) for label in labels)
    rows = [
        actual.ljust(width)
        + "".join(str(report.confusion[actual][p]).rjust(width) for p in labels)
        for actual in labels
    ]
    return [head, *rows]


def _percent(value: float | None) -> str:
    return "n/a (no rows)" if value is None else f"{value:.1%}"
