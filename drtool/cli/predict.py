"""Placeholder while this command is being built."""

from __future__ import annotations

import click


@click.command(name="predict")
def predict() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
