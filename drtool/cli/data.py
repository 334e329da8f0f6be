"""`drtool load`: data.txt and images to the prediction input and actuals."""

from __future__ import annotations

import click


@click.command()
def load() -> None:
    """Turn data.txt and its images into prepared_data.csv, actuals.csv, merged_file.csv."""
    raise NotImplementedError
