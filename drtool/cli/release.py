"""`drtool release`: ship environment/ and model/ to a tested deployment."""

from __future__ import annotations

import logging

import click

from drtool.cli.common import emit_json, settings_from
from drtool.release import ReleaseReport, ReleaseStep, run_release

# Image builds run for most of an hour: their progress lines (INFO) are shown
# unless -q asks for errors only.
PROGRESS_LOGGER = "drtool.release"


@click.command(name="release")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be created, versioned or replaced, and why; change nothing.",
)
@click.option(
    "--target",
    type=click.Choice(["remote", "local"]),
    default="remote",
    show_default=True,
    help="remote: DataRobot. local: build the same bundle and validate the "
    "model with DRUM on this machine.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report.")
@click.pass_context
def release(ctx: click.Context, dry_run: bool, target: str, as_json: bool) -> None:
    """Release model/ on environment/ as a tested DataRobot deployment.

    Each run does only what changed since the last one (recorded in
    .drtool-state.json beside config.yaml), and resumes a run that was
    interrupted. The API token comes from DATAROBOT_API_TOKEN, a .env file
    beside config.yaml, or the SDK's drconfig.yaml.

    \b
    Example:
      drtool release --dry-run
      drtool release
      drtool release --target local
    """
    settings = settings_from(ctx)
    _show_progress()
    on_step = None if as_json else _print_step
    report = run_release(settings, dry_run=dry_run, target=target, on_step=on_step)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_summary(report)


def _show_progress() -> None:
    root = logging.getLogger()
    if root.level == logging.WARNING:
        logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)


def _print_step(step: ReleaseStep) -> None:
    line = f"{step.object:<26} {step.action:<12} {step.id or '-'}"
    click.echo(f"{line}  {step.link}".rstrip())
    if step.reason:
        click.echo(f"{'':<4}{step.reason}")


def _print_summary(report: ReleaseReport) -> None:
    for note in report.notes:
        click.echo(f"Note: {note}", err=True)
    if report.dry_run:
        click.echo("Dry run: nothing was changed.", err=True)
