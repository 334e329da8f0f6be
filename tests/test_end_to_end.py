"""The whole local path through the CLI, as a user runs it: load, predict on a
real DRUM server with the real Keras model, score. On the real CT slices of
../shared/data/ct, and on the bundled example made from pydicom's CT slice.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drtool.predict.drum import process_group_alive

pytestmark = pytest.mark.drum

REPO = Path(__file__).resolve().parent.parent


def drtool(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "drtool", "--config", str(config), "-v", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def write_config(folder: Path) -> Path:
    config = folder / "config.yaml"
    config.write_text(f"model:\n  dir: {REPO / 'model'}\n")
    return config


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def load_and_predict(config: Path, dataset: Path, images: Path, out: Path) -> None:
    loaded = drtool(
        config, "load", str(dataset), "--images", str(images), "--out", str(out)
    )
    assert loaded.returncode == 0, loaded.stderr

    predicted = drtool(
        config,
        "predict",
        "--target",
        "local",
        "--input",
        str(out / "prepared_data.csv"),
    )
    assert predicted.returncode == 0, predicted.stderr
    group = int(re.search(r"process group (\d+)", predicted.stderr).group(1))
    assert not process_group_alive(group), "the DRUM server outlived drtool"


def test_covidx_slices_are_predicted_and_scored(shared_ct, tmp_path):
    config = write_config(tmp_path)
    covidx = shared_ct / "covidx"
    load_and_predict(config, covidx, covidx, tmp_path)

    predictions = rows_of(tmp_path / "predictions.csv")
    prepared = rows_of(tmp_path / "prepared_data.csv")
    assert [p["id"] for p in predictions] == [p["id"] for p in prepared]
    assert len(predictions) == 2  # one per line of covidx/data.txt
    assert {p["status"] for p in predictions} == {"ok"}
    for row in predictions:
        total = float(row["probability_0"]) + float(row["probability_1"])
        assert total == pytest.approx(1.0, abs=1e-5)

    scored = drtool(
        config,
        "submit-actuals",
        "--target",
        "local",
        "--json",
        "--actuals",
        str(tmp_path / "actuals.csv"),
    )
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["scored"] == 2
    assert report["actuals_without_prediction"] == 0
    assert report["predictions_without_actual"] == 0
    # The demonstration model was trained on these two slices: it must at least
    # reproduce its own training labels (COVID-19 -> "1", normal -> "0").
    assert report["accuracy"] == 1.0


def test_the_unlabelled_volume_is_predicted_row_for_row(shared_ct, tmp_path):
    config = write_config(tmp_path)
    volume = shared_ct / "volume"
    load_and_predict(config, volume, volume / "images", tmp_path)

    lines = (volume / "data.txt").read_text().split()[::5]
    predictions = rows_of(tmp_path / "predictions.csv")
    assert len(predictions) == len(lines) == 30
    assert {p["status"] for p in predictions} == {"ok"}
    assert {p["prediction"] for p in predictions} <= {"0", "1"}
    assert rows_of(tmp_path / "actuals.csv") == []

    scored = drtool(
        config, "submit-actuals", "--json", "--actuals", str(tmp_path / "actuals.csv")
    )
    report = json.loads(scored.stdout)
    assert report["scored"] == 0 and report["predictions_without_actual"] == 30


def test_the_bundled_example_runs_end_to_end(tmp_path):
    made = subprocess.run(
        [sys.executable, str(REPO / "example" / "make_example.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "data.txt" in made.stdout
    config = write_config(tmp_path)
    load_and_predict(config, tmp_path, tmp_path / "images", tmp_path)

    predictions = rows_of(tmp_path / "predictions.csv")
    assert len(predictions) == 6
    assert {p["status"] for p in predictions} == {"ok"}
    scored = drtool(
        config, "submit-actuals", "--actuals", str(tmp_path / "actuals.csv")
    )
    assert scored.returncode == 0, scored.stderr
    assert "Scored 5 rows" in scored.stdout
    assert "Predictions without an actual:  1" in scored.stdout
