"""`drtool release --target local`: the same bundle, validated with DRUM here."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import responses

from drtool.errors import ConfigError, InputError, ModelTestFailed
from drtool.release import local, run_release
from drtool.settings import Settings, load_settings
from tests.fake_model import make_fake_model, write_prepared

pytest_plugins = ["tests.fake_datarobot"]

SERVER = "http://127.0.0.1:59999"
ROUTE = f"{SERVER}/predictUnstructured/"


class StubServer:
    """Stands in for DrumServer: records the folder it was asked to serve."""

    served: list[list[str]] = []

    def __init__(self, code_dir: Path, *, workers: int, start_timeout: float) -> None:
        self.code_dir = code_dir
        self.url = SERVER

    def __enter__(self) -> StubServer:
        files = sorted(
            p.relative_to(self.code_dir).as_posix()
            for p in self.code_dir.rglob("*")
            if p.is_file()
        )
        StubServer.served.append(files)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def log_tail(self) -> str:
        return "(stub log)"


@pytest.fixture
def local_settings(project, monkeypatch) -> Settings:
    monkeypatch.setattr(local, "DrumServer", StubServer)
    StubServer.served = []
    config = project / "config.yaml"
    config.write_text(config.read_text() + "data:\n  dir: data\n")
    (project / "data").mkdir()
    write_prepared(project / "data" / "prepared_data.csv", 8)
    return load_settings(config)


@contextmanager
def model_answering(*answers: dict):
    with responses.RequestsMock() as mock:
        body = json.dumps({"predictions": list(answers)})
        mock.post(ROUTE, body=body, content_type="application/json")
        yield mock


def labelled(row_id: str, label: str = "1") -> dict:
    return {"id": row_id, "label": label, "probabilities": {"0": 0.2, "1": 0.8}}


def test_local_validation_serves_the_selection_and_scores_sample_rows(
    local_settings, project
):
    (project / "model" / ".env").write_text("SECRET=1\n")
    ids = [f"row-{i:05d}" for i in range(5)]
    with model_answering(*(labelled(i) for i in ids)) as mock:
        report = run_release(local_settings, dry_run=False, target="local")
        sent = mock.calls[0].request

    assert StubServer.served == [["custom.py", "utils/__init__.py", "utils/helpers.py"]]
    assert sent.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert sent.body.decode().splitlines()[0] == "id,img,x1,y1,x2,y2"
    assert len(sent.body.decode().splitlines()) == 1 + 5
    assert [s.action for s in report.steps] == ["packed", "passed"]
    assert (project / "environment.zip").exists()


def test_a_row_without_a_label_fails_the_local_validation(local_settings):
    answers = [labelled(f"row-{i:05d}") for i in range(4)]
    answers.append({"id": "row-00004", "error": "cannot decode image"})
    with model_answering(*answers), pytest.raises(ModelTestFailed) as failed:
        run_release(local_settings, dry_run=False, target="local")

    assert "row-00004: cannot decode image" in str(failed.value)
    assert "(stub log)" in str(failed.value)


def test_a_label_outside_the_class_labels_fails(local_settings):
    answers = [labelled(f"row-{i:05d}", label="2") for i in range(5)]
    with model_answering(*answers), pytest.raises(ModelTestFailed, match="'2'"):
        run_release(local_settings, dry_run=False, target="local")


def test_local_validation_needs_prepared_data(local_settings):
    (local_settings.data.dir / "prepared_data.csv").unlink()

    with pytest.raises(InputError, match="Run `drtool load` first"):
        run_release(local_settings, dry_run=False, target="local")


def test_a_local_dry_run_starts_nothing(local_settings, project):
    report = run_release(local_settings, dry_run=True, target="local")

    assert StubServer.served == []
    assert [s.action for s in report.steps] == ["hashed", "run"]
    assert not (project / "environment.zip").exists()


def test_local_refuses_a_context_without_a_dockerfile(local_settings, project):
    (project / "environment" / "Dockerfile").unlink()
    with pytest.raises(ConfigError, match="no Dockerfile at its top level"):
        run_release(local_settings, dry_run=False, target="local")


@pytest.mark.drum
def test_local_validation_with_a_real_drum_server(project):
    model = project / "model"
    for path in sorted(model.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    make_fake_model(model)
    config = project / "config.yaml"
    config.write_text(config.read_text() + "data:\n  dir: data\n")
    (project / "data").mkdir()
    write_prepared(project / "data" / "prepared_data.csv", 3)

    report = run_release(load_settings(config), dry_run=False, target="local")

    assert report.steps[-1].reason == "DRUM labelled each of 3 sample rows"
