"""The local actuals report: accuracy, confusion matrix, unmatched rows."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from drtool.cli import cli
from drtool.errors import InputError
from drtool.scoring import score_predictions

HEADER = "id,prediction,probability_0,probability_1,status,error\n"


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    predictions = write(
        tmp_path / "predictions.csv",
        HEADER
        + "a,1,0.1,0.9,ok,\n"  # actual 1: true positive
        + "b,0,0.8,0.2,ok,\n"  # actual 1: false negative
        + "c,0,0.9,0.1,ok,\n"  # actual 0: true negative
        + "d,1,0.3,0.7,ok,\n"  # actual 0: false positive
        + "e,1,0.2,0.8,ok,\n"  # actual 1: true positive
        + "f,,,,failed,bad image\n"  # actual 0, prediction failed
        + "g,0,0.9,0.1,ok,\n",  # no actual
    )
    actuals = write(
        tmp_path / "actuals.csv",
        "id,actual\na,1\nb,1\nc,0\nd,0\ne,1\nf,0\nh,1\n",  # h: no prediction
    )
    return predictions, actuals


def test_figures_are_computed_on_the_matched_rows(files):
    report = score_predictions(*files, ["0", "1"])

    assert report.scored == 5
    assert report.accuracy == pytest.approx(3 / 5)
    assert report.sensitivity == pytest.approx(2 / 3)
    assert report.specificity == pytest.approx(1 / 2)
    assert report.confusion == {"0": {"0": 1, "1": 1}, "1": {"0": 1, "1": 2}}


def test_unmatched_and_failed_rows_are_counted_not_dropped(files):
    report = score_predictions(*files, ["0", "1"])

    assert report.actuals_without_prediction == 1
    assert report.sample_unmatched_ids == ["h"]
    assert report.failed_predictions == 1
    assert report.predictions_without_actual == 1


def test_three_classes_use_the_last_label_as_positive(tmp_path):
    predictions = write(
        tmp_path / "p.csv",
        "id,prediction,probability_0,probability_1,probability_2,status,error\n"
        "a,2,0,0,1,ok,\nb,1,0,1,0,ok,\nc,2,0,0,1,ok,\n",
    )
    actuals = write(tmp_path / "a.csv", "id,actual\na,2\nb,0\nc,1\n")
    report = score_predictions(predictions, actuals, ["0", "1", "2"])

    assert report.positive_label == "2"
    assert report.sensitivity == 1.0
    assert report.specificity == pytest.approx(1 / 2)
    assert report.confusion["1"]["2"] == 1


def test_no_rows_gives_no_figures_rather_than_a_division_by_zero(tmp_path):
    predictions = write(tmp_path / "p.csv", HEADER)
    actuals = write(tmp_path / "a.csv", "id,actual\n")
    report = score_predictions(predictions, actuals, ["0", "1"])
    assert report.accuracy is None and report.sensitivity is None


def test_an_actual_outside_the_labels_names_its_line(tmp_path):
    predictions = write(tmp_path / "p.csv", HEADER)
    actuals = write(tmp_path / "a.csv", "id,actual\na,1\nb,7\n")
    with pytest.raises(InputError, match="line 3: actual '7'"):
        score_predictions(predictions, actuals, ["0", "1"])


def test_a_missing_file_is_named(tmp_path):
    actuals = write(tmp_path / "a.csv", "id,actual\n")
    with pytest.raises(InputError, match="p.csv does not exist"):
        score_predictions(tmp_path / "p.csv", actuals, ["0", "1"])


def test_the_cli_prints_text_and_json(files, tmp_path):
    predictions, actuals = files
    config = write(tmp_path / "config.yaml", f"data:\n  dir: {tmp_path}\n")
    runner = CliRunner()

    text = runner.invoke(cli, ["--config", str(config), "submit-actuals"])
    assert text.exit_code == 0, text.output
    assert "Accuracy:    60.0%" in text.stdout
    assert "Actuals without a prediction:   1" in text.stdout

    as_json = runner.invoke(
        cli, ["--config", str(config), "submit-actuals", "--target", "local", "--json"]
    )
    document = json.loads(as_json.stdout)
    assert document["accuracy"] == pytest.approx(0.6)
    assert document["confusion_matrix"]["1"]["1"] == 2


def test_the_cli_exits_1_with_error_text_on_a_missing_file(tmp_path):
    config = write(tmp_path / "config.yaml", f"data:\n  dir: {tmp_path}\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "submit-actuals"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
