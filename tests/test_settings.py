"""config.yaml: validation with the key named, precedence, discovery."""

from __future__ import annotations

import pytest

from drtool.errors import ConfigError
from drtool.settings import find_config, load_settings


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_repository_config_is_valid(repo_root):
    settings = load_settings(repo_root / "config.yaml")
    assert settings.model.class_labels == ["0", "1"]
    assert settings.data.label_map == {0: "0", 1: "0", 2: "1"}
    assert settings.model.dir == repo_root / "model"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  colour: red\n", "config.yaml: model: unknown key 'colour'"),
        ("predict:\n  concurrency: two\n", "predict.concurrency: expected a whole"),
        ("predict:\n  local:\n    workers: 1.5\n", "predict.local.workers"),
        ("model:\n  target_type: tree\n", "model.target_type: 'tree' is not one of"),
        ("model:\n  class_labels: [0, 1]\n", "model.class_labels[0]: expected text"),
        ("data:\n  label_map: {2: '9'}\n", "data.label_map maps to '9'"),
        ("data:\n  label_map: {x: '1'}\n", "data.label_map key 'x'"),
        ("- a list\n", "top level must be a mapping"),
        ("model: [\n", "not valid YAML"),
        ("actuals:\n  batch_size: 20000\n", "actuals.batch_size must be from 1"),
        ("predict:\n  request_timeout: 0\n", "predict.request_timeout must be more"),
        ("predict:\n  request_timeout: .nan\n", "predict.request_timeout must be more"),
        ("predict:\n  local:\n    workers: 0\n", "predict.local.workers must be more"),
        ("predict:\n  max_request_bytes: 0\n", "predict.max_request_bytes must be"),
        (
            "deployment:\n  prediction_environment_id: a\n  prediction_server_id: b\n",
            "not both",
        ),
    ],
)
def test_a_bad_value_names_its_key(tmp_path, text, message):
    with pytest.raises(
        ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        load_settings(write(tmp_path, text))


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    path = write(tmp_path, "model:\n  dir: my-model\n")
    monkeypatch.chdir("/")
    assert load_settings(path).model.dir == tmp_path / "my-model"


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    settings = load_settings(write(tmp_path, ""))
    assert settings.predict.rows_per_request >= 1
    assert settings.data.dir == tmp_path / "data"


def test_the_config_is_found_in_a_parent_folder(tmp_path, monkeypatch):
    write(tmp_path, "")
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    monkeypatch.delenv("DRTOOL_CONFIG", raising=False)
    assert find_config() == tmp_path / "config.yaml"


def test_no_config_anywhere_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRTOOL_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="pass --config"):
        find_config()


def test_the_token_is_not_a_config_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'token'"):
        load_settings(write(tmp_path, "datarobot:\n  token: abc\n"))
