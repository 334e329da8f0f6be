"""The command line: parse options, call one library function, print.

No other module imports Click or prints. Each subcommand lives in its own
module here; this one holds the group, the shared options and the one place
where a ``DrtoolError`` becomes ``Error: …`` and an exit code.
"""

from __future__ import annotations

import logging
import sys

import click

from drtool import __version__
from drtool.cli import actuals, data, predict, release
from drtool.cli.common import DrtoolGroup


@click.group(cls=DrtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drtool")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="DRTOOL_CONFIG",
    help="config.yaml to use. Default: ./config.yaml, else the nearest parent's.",
)
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, quiet: bool) -> None:
    """Ship a custom model to DataRobot and work with its deployment.

    \b
    Example, on the bundled example:
      drtool load example/data --images example/data/images
      drtool predict --target local
      drtool submit-actuals --target local
    """
    level = (
        logging.ERROR
        if quiet
        else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose + 1, 2)]
    )
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    ctx.obj = {"config_path": config_path}


cli.add_command(data.load)
cli.add_command(predict.predict)
cli.add_command(actuals.submit_actuals)
cli.add_command(release.release)


def main() -> None:
    """Console-script entry point."""
    cli()
