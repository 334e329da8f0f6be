"""What every command shares: the group class, settings lookup, output."""

from __future__ import annotations

import json
from typing import Any

import click

from drtool.errors import DrtoolError
from drtool.settings import Settings, load_settings

INTERRUPTED_EXIT_CODE = 130


class DrtoolGroup(click.Group):
    """A Click group that turns expected errors into ``Error: …`` and an exit code.

    Usage mistakes stay Click's own and exit 2. Any other exception is a bug in
    drtool and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DrtoolError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "Interrupted: finished work is kept; run again to resume.", err=True
            )
            ctx.exit(INTERRUPTED_EXIT_CODE)


# Options several commands share, defined once so they read and behave alike.
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the report as JSON."
)
deployment_id_option = click.option(
    "--deployment-id",
    default=None,
    help="Remote target: the deployment. Default: deployment.id of config.yaml, "
    "else the one `drtool release` made.",
)


def progress_option(what: str = "Progress bar") -> Any:
    """Return the --progress/--no-progress option, its help starting with ``what``."""
    return click.option(
        "--progress/--no-progress",
        default=None,
        help=f"{what}. Default: on when stderr is a terminal.",
    )


def settings_from(ctx: click.Context) -> Settings:
    """Load config.yaml as the group's --config option says."""
    return load_settings(ctx.find_root().obj.get("config_path"))


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout, for piping."""
    click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))
