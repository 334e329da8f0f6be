"""`drtool load`: data.txt and images to the prediction input and actuals."""

from __future__ import annotations

from pathlib import Path

import click

from drtool.cli.common import emit_json, json_option, settings_from
from drtool.dataset import LoadReport, load_dataset

_FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command()
@click.argument("dataset_dir", required=False, type=_FOLDER)
@click.option(
    "--images",
    "images_dir",
    type=_FOLDER,
    help="Folder of the images data.txt names. Default: data.images of config.yaml.",
)
@click.option(
    "--out",
    "out_dir",
    type=_FOLDER,
    help="Where the three CSVs go. Default: DATASET_DIR.",
)
@json_option
@click.pass_context
def load(
    ctx: click.Context,
    dataset_dir: Path | None,
    images_dir: Path | None,
    out_dir: Path | None,
    as_json: bool,
) -> None:
    """Turn DATASET_DIR/data.txt and its images into the prediction CSVs.

    Writes prepared_data.csv, actuals.csv and merged_file.csv, or nothing if
    any line of data.txt is bad. DATASET_DIR defaults to data.dir of
    config.yaml.

    \b
    Example:
      drtool load example/data --images example/data/images
    """
    settings = settings_from(ctx)
    report = load_dataset(
        dataset_dir or settings.data.dir,
        images_dir or settings.data.images,
        label_map=settings.data.label_map,
        max_image_pixels=settings.data.max_image_pixels,
        out_dir=out_dir,
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        _show(report)


def _show(report: LoadReport) -> None:
    labels = ", ".join(f"{n} of {label!r}" for label, n in report.label_counts.items())
    with_actual = f"{report.rows_with_actual} with an actual"
    click.echo(
        f"Loaded {report.rows} rows from {report.data_file}: {with_actual}"
        f"{f' ({labels})' if labels else ''}, {report.rows_without_actual} without.",
        err=True,
    )
    click.echo(
        f"Wrote {report.prepared}, {report.actuals.name} and {report.merged.name}.",
        err=True,
    )
