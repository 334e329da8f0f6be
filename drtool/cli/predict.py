"""`drtool predict`: send the prepared rows to a target, write predictions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from drtool.cli.common import (
    deployment_id_option,
    emit_json,
    json_option,
    progress_option,
    settings_from,
)
from drtool.errors import PartialFailure
from drtool.predict import PredictReport, SendOptions, count_rows, predict_locally
from drtool.predict.remote import predict_remotely, resolve_deployment_id
from drtool.settings import Settings


@click.command()
@click.option(
    "--target",
    type=click.Choice(["local", "remote"]),
    default="local",
    show_default=True,
    help="local: a DRUM server on this machine. remote: the DataRobot deployment.",
)
@deployment_id_option
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Prepared rows. Default: prepared_data.csv in data.dir of config.yaml.",
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Predictions file. Default: predictions.csv beside the input.",
)
@click.option(
    "--address",
    default=None,
    help="Local target: use the DRUM server running at HOST:PORT "
    "instead of starting one.",
)
@click.option(
    "--mode",
    type=click.Choice(["single", "multi"]),
    default=None,
    help="single: one request at a time; multi: --concurrency at a time.",
)
@click.option(
    "--rows-per-request",
    type=click.IntRange(min=1),
    default=None,
    help="Rows sent in one request (config: predict.rows_per_request).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Requests in flight in multi mode (config: predict.concurrency).",
)
@progress_option("Progress bar")
@json_option
@click.pass_context
def predict(
    ctx: click.Context,
    target: str,
    deployment_id: str | None,
    input_path: Path | None,
    output_path: Path | None,
    address: str | None,
    mode: str | None,
    rows_per_request: int | None,
    concurrency: int | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Predict the prepared rows and write one prediction per row.

    Rows the server rejects are written with the reason; the exit code is then
    3. An interrupted run resumes when run again with the same output.

    \b
    Examples:
      drtool predict --target local --input example/data/prepared_data.csv
      drtool predict --target remote --deployment-id 65f0c0ffee0123456789abcd
    """
    _check_target_options(target, address, deployment_id)
    settings = settings_from(ctx)
    input_path = input_path or settings.data.dir / "prepared_data.csv"
    output_path = output_path or input_path.with_name("predictions.csv")
    options = _send_options(settings, mode, rows_per_request, concurrency)
    show_progress = sys.stderr.isatty() if progress is None else progress
    # Resolved before the progress bar: a missing id fails at once.
    remote_id = (
        resolve_deployment_id(settings, deployment_id) if target == "remote" else ""
    )

    with _progress_bar(input_path, show_progress) as bar:
        on_progress = bar.update if bar else None
        if remote_id:
            report = predict_remotely(
                settings, remote_id, input_path, output_path, options, on_progress
            )
        else:
            report = _predict_locally(
                settings, input_path, output_path, options, address, on_progress
            )
    _show(report, as_json)
    if report.failed:
        raise PartialFailure(
            f"{report.failed} of {report.rows} rows failed; their reasons are in "
            f"the status and error columns of {report.output}."
        )


def _predict_locally(
    settings: Settings,
    input_path: Path,
    output_path: Path,
    options: SendOptions,
    address: str | None,
    on_progress: Callable[[int], None] | None,
) -> PredictReport:
    local = settings.predict.local
    return predict_locally(
        settings.model.dir,
        input_path,
        output_path,
        settings.model.class_labels,
        options,
        address=address if address is not None else local.address,
        workers=local.workers,
        start_timeout=local.start_timeout,
        on_progress=on_progress,
    )


def _check_target_options(
    target: str, address: str | None, deployment_id: str | None
) -> None:
    if target == "remote" and address is not None:
        raise click.UsageError("--address is for --target local.")
    if target == "local" and deployment_id is not None:
        raise click.UsageError("--deployment-id is for --target remote.")


def _send_options(
    settings: Settings,
    mode: str | None,
    rows_per_request: int | None,
    concurrency: int | None,
) -> SendOptions:
    configured = settings.predict
    mode = mode or configured.mode
    return SendOptions(
        rows_per_request=rows_per_request or configured.rows_per_request,
        concurrency=1 if mode == "single" else concurrency or configured.concurrency,
        max_request_bytes=configured.max_request_bytes,
        timeout=configured.request_timeout,
    )


def _progress_bar(input_path: Path, show: bool) -> Any:
    if not show or not input_path.is_file():
        return nullcontext(None)
    return click.progressbar(
        length=count_rows(input_path),
        label="Predicting",
        file=sys.stderr,
        show_pos=True,
    )


def _show(report: PredictReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.__dict__ | {"rows_per_second": report.rows_per_second})
        return
    resumed = f", {report.resumed} kept from an earlier run" if report.resumed else ""
    click.echo(
        f"{report.succeeded} of {report.rows} rows predicted on {report.target} in "
        f"{report.seconds:.1f} s ({report.rows_per_second:.1f} rows/s{resumed}).",
        err=True,
    )
    for failure in report.failures:
        click.echo(f"  failed: {failure['id']}: {failure['error']}", err=True)
    click.echo(f"Predictions: {report.output}", err=True)
