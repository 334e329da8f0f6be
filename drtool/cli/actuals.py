"""`drtool submit-actuals`: the ground truth, scored here or sent to DataRobot."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from drtool.actuals import ActualsReport
from drtool.actuals import submit_actuals as send_actuals
from drtool.cli.common import (
    deployment_id_option,
    emit_json,
    json_option,
    progress_option,
    settings_from,
)
from drtool.errors import PartialFailure
from drtool.predict import count_rows
from drtool.predict.remote import resolve_deployment_id
from drtool.scoring import ScoreReport, score_predictions
from drtool.settings import Settings


@click.command(name="submit-actuals")
@click.option(
    "--target",
    type=click.Choice(["local", "remote"]),
    default="local",
    show_default=True,
    help="local: score the predictions file against the actuals here. "
    "remote: send the actuals to the DataRobot deployment.",
)
@deployment_id_option
@click.option(
    "--actuals",
    "actuals_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Actuals: id,actual, and optionally was_acted_on and timestamp. "
    "Default: actuals.csv in data.dir of config.yaml.",
)
@click.option(
    "--predictions",
    "predictions_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Local target: predictions file. Default: predictions.csv beside the actuals.",
)
@progress_option("Remote target: progress bar")
@json_option
@click.pass_context
def submit_actuals(
    ctx: click.Context,
    target: str,
    deployment_id: str | None,
    actuals_path: Path | None,
    predictions_path: Path | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Send the actuals to the deployment, or score predictions against them.

    Remote: batches DataRobot rejects are reported with its message and the
    exit code is then 3; a rerun sends only what was not accepted yet.

    \b
    Examples:
      drtool submit-actuals --target local
      drtool submit-actuals --target remote --deployment-id 65f0c0ffee0123456789abcd
    """
    _check_target_options(target, deployment_id, predictions_path)
    settings = settings_from(ctx)
    actuals_path = actuals_path or settings.data.dir / "actuals.csv"
    if target == "remote":
        _send_remotely(settings, deployment_id, actuals_path, progress, as_json)
    else:
        predictions_path = predictions_path or actuals_path.with_name("predictions.csv")
        _score_locally(settings, actuals_path, predictions_path, as_json)


def _send_remotely(
    settings: Settings,
    deployment_id: str | None,
    actuals_path: Path,
    progress: bool | None,
    as_json: bool,
) -> None:
    remote_id = resolve_deployment_id(settings, deployment_id)
    show = sys.stderr.isatty() if progress is None else progress
    with _progress_bar(actuals_path, show) as bar:
        report = send_actuals(
            settings, remote_id, actuals_path, bar.update if bar else None
        )
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(format_sent(report))
    if report.rejected or report.not_sent:
        raise PartialFailure(
            f"{report.rejected + report.not_sent} of {report.rows} actuals were not "
            f"accepted; fix what the messages say and run again: the rows already "
            f"accepted are not sent again (see {report.journal})."
        )


def _score_locally(
    settings: Settings, actuals_path: Path, predictions_path: Path, as_json: bool
) -> None:
    report = score_predictions(
        predictions_path, actuals_path, settings.model.class_labels
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(format_score(report))


def _check_target_options(
    target: str, deployment_id: str | None, predictions_path: Path | None
) -> None:
    if target == "local" and deployment_id is not None:
        raise click.UsageError("--deployment-id is for --target remote.")
    if target == "remote" and predictions_path is not None:
        raise click.UsageError("--predictions is for --target local.")


def _progress_bar(actuals_path: Path, show: bool) -> Any:
    if not show or not actuals_path.is_file():
        return nullcontext(None)
    return click.progressbar(
        length=count_rows(actuals_path),
        label="Sending actuals",
        file=sys.stderr,
        show_pos=True,
    )


def format_sent(report: ActualsReport) -> str:
    """Return the remote actuals report as text."""
    earlier = (
        f" ({report.accepted_earlier} in an earlier run)"
        if report.accepted_earlier
        else ""
    )
    lines = [
        f"Actuals of {report.actuals_file} for deployment {report.deployment_id} "
        f"(association id column {report.association_id_column!r}):",
        f"  rows:     {report.rows}",
        f"  accepted: {report.accepted_total}{earlier}",
        f"  rejected: {report.rejected}",
    ]
    if report.not_sent:
        lines.append(f"  not sent: {report.not_sent} (stopped: rejections in a row)")
    for rejection in report.rejections:
        lines.append(
            f"  rejected batch of {rejection.rows} ({rejection.first_id} to "
            f"{rejection.last_id}): {rejection.message}"
        )
    lines.append(
        "DataRobot processes accepted actuals in the background; accuracy "
        "appears on the deployment's Accuracy tab."
    )
    return "\n".join(lines)


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
