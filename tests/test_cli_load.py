"""`drtool load`: exit codes, the summary, --json, and where paths are relative to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from drtool.cli import cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config.yaml whose data.dir (data/) holds data.txt and images/."""
    folder = tmp_path / "project"
    images = folder / "data" / "images"
    images.mkdir(parents=True)
    Image.new("L", (16, 16), 80).save(images / "a.png")
    Image.new("L", (16, 16), 160).save(images / "b.png")
    (folder / "data" / "data.txt").write_text(
        "a.png 2 0 0 16 16\nb.png 0 2 2 14 14\na.png 4 4 12 12\n"
    )
    (folder / "config.yaml").write_text("data:\n  dir: data\n  images: data/images\n")
    return folder


def run(project: Path, *args: str) -> Result:
    config = str(project / "config.yaml")
    return CliRunner().invoke(cli, ["--config", config, "load", *args])


def test_defaults_come_from_config(project: Path) -> None:
    result = run(project)
    assert result.exit_code == 0, result.output
    assert "Loaded 3 rows from" in result.stderr
    assert "2 with an actual (1 of '0', 1 of '1'), 1 without." in result.stderr
    assert result.stdout == ""
    for name in ("prepared_data.csv", "actuals.csv", "merged_file.csv"):
        assert (project / "data" / name).is_file()


def test_bad_lines_exit_1_and_name_every_line(project: Path) -> None:
    (project / "data" / "data.txt").write_text(
        "a.png 2 0 0 16 16\na.png 2 0 0 17 16\nb.png 0 2\nmissing.png 0 0 0 1 1\n"
    )
    result = run(project)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "has 3 bad lines; nothing was written" in result.stderr
    assert "data.txt line 2: box x2=17 is outside the image (width 16)" in (
        result.stderr
    )
    assert "data.txt line 3: expected 6 fields" in result.stderr
    assert "data.txt line 4: image missing.png not found in" in result.stderr
    assert "Traceback" not in result.output
    assert not (project / "data" / "merged_file.csv").exists()


def test_command_line_paths_are_relative_to_the_working_directory(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run(
        project,
        "../project/data",
        "--images",
        "../project/data/images",
        "--out",
        "out",
    )
    assert result.exit_code == 0, result.output
    assert (elsewhere / "out" / "merged_file.csv").is_file()
    assert not (project / "data" / "merged_file.csv").exists()


def test_json_report_on_stdout(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(project, "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 3
    assert report["rows_with_actual"] == 2
    assert report["rows_without_actual"] == 1
    assert report["label_counts"] == {"0": 1, "1": 1}
    assert report["data_file"] == str(project / "data" / "data.txt")
    assert report["outputs"]["merged"] == str(out / "merged_file.csv")


def test_missing_image_folder_is_an_error(project: Path) -> None:
    result = run(project, "--images", str(project / "nowhere"))
    assert result.exit_code == 1
    assert "Error: the image folder" in result.stderr
    assert "does not exist" in result.stderr


def test_help_shows_an_example() -> None:
    result = CliRunner().invoke(cli, ["load", "--help"])
    assert result.exit_code == 0
    assert "drtool load example/data --images example/data/images" in result.output
