"""The DRUM hooks of model/custom.py, called in-process as DRUM calls them.

The shipped model is loaded once for the module. No test here starts
`drum server`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import inspect
import json
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests import imaging

SERVER_KWARGS = {"mimetype": "text/csv", "charset": "utf-8", "query": {}, "headers": {}}


def is_model_module(name: str) -> bool:
    return name == "custom" or name == "utils" or name.startswith("utils.")


@contextlib.contextmanager
def hooks_from(code_dir: Path) -> Iterator[ModuleType]:
    """Import ``code_dir``/custom.py as DRUM does: its folder first on sys.path.

    Modules named custom and utils are set aside first and restored after,
    so a copied model folder really runs its own copy of the code.
    """
    saved = {name: mod for name, mod in sys.modules.items() if is_model_module(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(code_dir))
    try:
        yield importlib.import_module("custom")
    finally:
        sys.path.remove(str(code_dir))
        for name in [name for name in sys.modules if is_model_module(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def hooks(repo_root: Path) -> Iterator[ModuleType]:
    with hooks_from(repo_root / "model") as module:
        yield module


@pytest.fixture(scope="module")
def model(hooks: ModuleType, repo_root: Path) -> Any:
    return hooks.load_model(str(repo_root / "model"))


def score(hooks: ModuleType, model: Any, body: str | bytes, **kwargs: Any) -> list:
    """Call the hook like DRUM's server and return the predictions list."""
    text, extras = hooks.score_unstructured(model, body, **{**SERVER_KWARGS, **kwargs})
    assert extras == {"mimetype": "application/json"}
    return json.loads(text)["predictions"]


def made_png(mode: str = "L") -> str:
    return imaging.to_cell(
        imaging.encode(imaging.image_in_mode(mode, imaging.body_slice()))
    )


def made_jpeg() -> str:
    image = imaging.image_in_mode("RGB", imaging.body_slice())
    return imaging.to_cell(imaging.encode(image, "JPEG"))


def assert_prediction(entry: dict, row_id: str, labels: tuple[str, ...]) -> None:
    assert entry["id"] == row_id
    assert entry["label"] in labels
    assert list(entry["probabilities"]) == list(labels)
    assert sum(entry["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    best = max(entry["probabilities"], key=entry["probabilities"].get)
    assert entry["label"] == best


# --- load_model ------------------------------------------------------------


def test_load_model_reads_the_input_from_the_model(model: Any) -> None:
    assert (model.spec.height, model.spec.width, model.spec.channels) == (128, 128, 3)
    assert model.class_labels == ("0", "1")
    assert model.settings.weights.suffix == ".keras"


def test_shipped_weights_are_small(model: Any) -> None:
    assert model.settings.weights.stat().st_size < 2 * 1024 * 1024


# --- score_unstructured: real slices and made images ------------------------


def test_real_covidx_slices_are_scored(
    hooks: ModuleType, model: Any, shared_ct: Path
) -> None:
    folder = shared_ct / "covidx"
    rows = []
    for number, line in enumerate((folder / "data.txt").read_text().splitlines()):
        name, _, *box = line.split()
        # One row plain base64, the next in the manual workflow's b'...' wrapper.
        cell = imaging.to_cell((folder / name).read_bytes(), wrapped=number % 2 == 1)
        rows.append((name, cell, *box))

    entries = score(hooks, model, imaging.csv_body(rows))

    assert [e["id"] for e in entries] == [row[0] for row in rows]
    for entry in entries:
        assert_prediction(entry, entry["id"], ("0", "1"))
    # The demonstration model was trained on these two slices: it knows them.
    labels = {e["id"]: e["label"] for e in entries}
    assert labels == {"covidx-ct2a-covid.png": "1", "covidx-ct2a-normal.png": "0"}


def test_real_rgb_jpeg_slices_are_scored(
    hooks: ModuleType, model: Any, shared_ct: Path
) -> None:
    folder = shared_ct / "volume"
    lines = (folder / "data.txt").read_text().splitlines()[:4]
    rows = []
    for line in lines:
        name, *box = line.split()
        cell = imaging.to_cell((folder / "images" / name).read_bytes())
        rows.append((name, cell, *box))

    entries = score(hooks, model, imaging.csv_body(rows))

    assert len(entries) == 4
    for entry, row in zip(entries, rows, strict=True):
        assert_prediction(entry, row[0], ("0", "1"))


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA", "LA", "P"])
def test_made_images_are_scored(hooks: ModuleType, model: Any, mode: str) -> None:
    body = imaging.csv_body([("made", made_png(mode), 2, 2, 60, 60)])

    (entry,) = score(hooks, model, body)

    assert_prediction(entry, "made", ("0", "1"))


def test_str_and_bytes_bodies_give_the_same_answer(
    hooks: ModuleType, model: Any
) -> None:
    body = imaging.csv_body(
        [("a", made_png(), 0, 0, 64, 64), ("b", made_jpeg(), 0, 0, 64, 64)]
    )

    as_text = score(hooks, model, body)
    as_bytes = score(hooks, model, body.encode(), mimetype="application/octet-stream")
    without_charset = hooks.score_unstructured(model, body.encode())

    assert as_text == as_bytes == json.loads(without_charset[0])["predictions"]


def test_extra_columns_and_the_workflow_index_column_are_ignored(
    hooks: ModuleType, model: Any
) -> None:
    # pandas' to_csv with its index, as the manual workflow's predict.py sent it.
    body = f",id,img,x1,y1,x2,y2,result\n0,r0,{made_png()},0,0,64,64,1\n"

    (entry,) = score(hooks, model, body)

    assert_prediction(entry, "r0", ("0", "1"))


def test_a_bad_row_gets_an_error_and_the_others_still_succeed(
    hooks: ModuleType, model: Any
) -> None:
    good = made_png()
    rows = [
        ("good-1", good, 0, 0, 64, 64),
        ("bad-base64", "!!!", 0, 0, 10, 10),
        ("not-image", imaging.to_cell(b"just text"), 0, 0, 10, 10),
        ("empty-box", good, 100, 100, 120, 120),
        ("float-box", good, 0, 0, "10.5", 10),
        ("good-2", made_jpeg(), -5, -5, 500, 500),
        ("short", "abc"),
        ("", good, 0, 0, 10, 10),
    ]

    entries = score(hooks, model, imaging.csv_body(rows))

    assert [e["id"] for e in entries] == [row[0] for row in rows]
    assert_prediction(entries[0], "good-1", ("0", "1"))
    assert_prediction(entries[5], "good-2", ("0", "1"))
    errors = {e["id"]: e["error"] for e in entries if "error" in e}
    assert errors == {
        "bad-base64": "row 2 (id 'bad-base64'): img is not valid base64",
        "not-image": "row 3 (id 'not-image'): img is not a PNG or JPEG image",
        "empty-box": "row 4 (id 'empty-box'): box x1=100 y1=100 x2=120 y2=120 "
        "holds no pixel of the 64x64 image (x2 and y2 are exclusive)",
        "float-box": "row 5 (id 'float-box'): box column x2 is '10.5', not a whole "
        "number",
        "short": "row 7 (id 'short'): the row does not have one cell per header column",
        "": "row 8 (id ''): id is empty",
    }


def test_all_good_rows_go_to_the_model_in_one_call(
    hooks: ModuleType, model: Any
) -> None:
    spy = CallCounter(model.model)
    spied = dataclasses.replace(model, model=spy)
    rows = [(f"r{i}", made_png(), 0, 0, 64, 64) for i in range(5)]
    rows.insert(2, ("bad", "!!!", 0, 0, 1, 1))

    entries = score(hooks, spied, imaging.csv_body(rows))

    assert spy.calls == [("call", 5)]
    assert [e["id"] for e in entries] == [row[0] for row in rows]


def test_a_large_request_is_still_one_predict_call(
    hooks: ModuleType, model: Any
) -> None:
    spy = CallCounter(model.model)
    spied = dataclasses.replace(model, model=spy)
    count = 70  # over DIRECT_CALL_ROWS: predict bounds the memory it uses
    rows = [(f"r{i}", made_png(), 0, 0, 64, 64) for i in range(count)]

    entries = score(hooks, spied, imaging.csv_body(rows))

    assert spy.calls == [("predict", count)]
    assert len(entries) == count and all("label" in e for e in entries)


class CallCounter:
    """Wraps a Keras model and records how it was asked, and for how many rows."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[tuple[str, int]] = []

    def __call__(self, batch: np.ndarray, training: bool = False) -> Any:
        self.calls.append(("call", len(batch)))
        return self.model(batch, training=training)

    def predict(self, batch: np.ndarray, **kwargs: Any) -> Any:
        self.calls.append(("predict", len(batch)))
        return self.model.predict(batch, **kwargs)


# --- score_unstructured: bodies that are no usable CSV ----------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "the body is empty"),
        ("  \n", "the body is empty"),
        ("hello world", "lacks the column(s) id, img, x1, y1, x2, y2"),
        ('{"id": "a", "img": "b"}', "lacks the column(s) id, img"),
        ("id,x1,y1,x2,y2\na,0,0,1,1\n", "lacks the column(s) img;"),
        ("id,img,x1,y1,x2,y2\n", "has a header but no rows"),
        ('id,img,x1,y1,x2,y2\n"a,b\n', "not valid CSV"),
        (b"\xff\xfe\x00garbage", "the body is not utf-8 text"),
    ],
)
def test_unusable_body_is_a_422(
    hooks: ModuleType, model: Any, body: str | bytes, message: str
) -> None:
    from datarobot_drum import CustomHTTPError

    with pytest.raises(CustomHTTPError) as caught:
        hooks.score_unstructured(model, body, mimetype="text/csv")

    assert caught.value.status_code == 422
    assert message in str(caught.value)


def test_unknown_charset_is_a_422(hooks: ModuleType, model: Any) -> None:
    from datarobot_drum import CustomHTTPError

    with pytest.raises(CustomHTTPError, match="unknown charset 'no-such-set'"):
        hooks.score_unstructured(model, b"id,img", charset="no-such-set")


# --- embedded MLOps reporting ------------------------------------------------


class FakeMlops:
    """Records reports, checking each call against the real MLOps signature."""

    def __init__(self, fail: bool = False) -> None:
        from datarobot_mlops.mlops import MLOps

        self.real = MLOps
        self.fail = fail
        self.calls: list[tuple[str, inspect.BoundArguments]] = []

    def record(self, name: str, *args: Any, **kwargs: Any) -> None:
        bound = inspect.signature(getattr(self.real, name)).bind(self, *args, **kwargs)
        self.calls.append((name, bound))
        if self.fail:
            raise RuntimeError("spooler unavailable")

    def report_deployment_stats(self, *args: Any, **kwargs: Any) -> None:
        self.record("report_deployment_stats", *args, **kwargs)

    def report_predictions_data(self, *args: Any, **kwargs: Any) -> None:
        self.record("report_predictions_data", *args, **kwargs)


def test_mlops_gets_stats_and_the_good_rows(hooks: ModuleType, model: Any) -> None:
    mlops = FakeMlops()
    rows = [
        ("a", made_png(), 1, 2, 60, 61),
        ("bad", "!!!", 0, 0, 1, 1),
        ("b", made_jpeg(), 0, 0, 64, 64),
    ]

    entries = score(hooks, model, imaging.csv_body(rows), mlops=mlops)

    (stats_name, stats), (data_name, data) = mlops.calls
    assert (stats_name, data_name) == (
        "report_deployment_stats",
        "report_predictions_data",
    )
    assert stats.arguments["num_predictions"] == 2
    assert isinstance(stats.arguments["execution_time_ms"], float)
    assert stats.arguments["execution_time_ms"] > 0

    features = data.arguments["features_df"]
    assert list(features.columns) == ["x1", "y1", "x2", "y2"]
    assert features.values.tolist() == [[1, 2, 60, 61], [0, 0, 64, 64]]
    assert data.arguments["association_ids"] == ["a", "b"]
    assert data.arguments["class_names"] == ["0", "1"]
    expected = [list(entries[i]["probabilities"].values()) for i in (0, 2)]
    assert data.arguments["predictions"] == expected


# datarobot-mlops 11.2.62 calls reset_index(inplace=True), which pandas 3.1
# deprecates: its code, not the model's.
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index")
def test_the_real_mlops_library_accepts_the_report(
    hooks: ModuleType, model: Any, tmp_path: Path
) -> None:
    # A filesystem spooler writes the reports to tmp_path: no network.
    from datarobot_mlops.mlops import MLOps

    mlops = MLOps().set_deployment_id("deployment").set_model_id("model")
    mlops = mlops.set_filesystem_spooler(str(tmp_path)).init()
    rows = [("a", made_png(), 0, 0, 64, 64), ("b", made_jpeg(), 1, 1, 60, 60)]
    try:
        score(hooks, model, imaging.csv_body(rows), mlops=mlops)
    finally:
        mlops.shutdown()

    spooled = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert b'"numPredictions\\":2' in spooled
    assert b'"associationIds\\":[\\"a\\",\\"b\\"]' in spooled
    assert b'"x1\\":[0,1]' in spooled


def test_mlops_is_not_given_repeated_association_ids(
    hooks: ModuleType, model: Any
) -> None:
    mlops = FakeMlops()
    rows = [("same", made_png(), 0, 0, 64, 64), ("same", made_png(), 0, 0, 64, 64)]

    score(hooks, model, imaging.csv_body(rows), mlops=mlops)

    data = mlops.calls[1][1]
    assert data.arguments["association_ids"] is None
    assert len(data.arguments["predictions"]) == 2


def test_mlops_with_no_good_row_reports_stats_only(
    hooks: ModuleType, model: Any
) -> None:
    mlops = FakeMlops()

    score(hooks, model, imaging.csv_body([("bad", "!!!", 0, 0, 1, 1)]), mlops=mlops)

    assert [name for name, _ in mlops.calls] == ["report_deployment_stats"]
    assert mlops.calls[0][1].arguments["num_predictions"] == 0


def test_a_failing_mlops_report_does_not_fail_the_request(
    hooks: ModuleType, model: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = imaging.csv_body([("a", made_png(), 0, 0, 64, 64)])

    (entry,) = score(hooks, model, body, mlops=FakeMlops(fail=True))

    assert_prediction(entry, "a", ("0", "1"))
    assert "MLOps reporting failed: RuntimeError: spooler unavailable" in caplog.text


# --- another model, dropped in by settings only -----------------------------


def copy_model_code(repo_root: Path, code_dir: Path) -> None:
    """Copy custom.py and utils/ (no settings, no weights) into ``code_dir``."""
    code_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo_root / "model" / "custom.py", code_dir / "custom.py")
    shutil.copytree(
        repo_root / "model" / "utils",
        code_dir / "utils",
        ignore=shutil.ignore_patterns("__pycache__"),
    )


def write_settings(code_dir: Path, text: str) -> None:
    (code_dir / "model-settings.yaml").write_text(text)


def save_keras_model(
    path: Path, input_shape: tuple, units: int, activation: Any
) -> None:
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        units, activation=activation, bias_initializer=keras.initializers.Constant(2.0)
    )(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Keras 3.15's own saving trips a NumPy 2 DeprecationWarning about
        # __array__(copy=...): Keras internals, nothing of the model's.
        warnings.simplefilter("ignore", DeprecationWarning)
        keras.Model(inputs, outputs).save(path)


def test_a_differently_shaped_model_drops_in_by_settings_only(
    repo_root: Path, tmp_path: Path
) -> None:
    code_dir = tmp_path / "code"
    copy_model_code(repo_root, code_dir)
    save_keras_model(code_dir / "weights" / "user.h5", (64, 48, 1), 3, "softmax")
    write_settings(
        code_dir,
        'weights: weights/user.h5\nclass_labels: ["normal", "pneumonia", "covid"]\n',
    )
    labels = ("normal", "pneumonia", "covid")
    body = imaging.csv_body(
        [("a", made_png("RGB"), 0, 0, 64, 64), ("b", "!!!", 0, 0, 1, 1)]
    )

    with hooks_from(code_dir) as user_hooks:
        assert Path(user_hooks.__file__).parent == code_dir
        assert Path(sys.modules["utils"].__file__).parent == code_dir / "utils"
        user_model = user_hooks.load_model(str(code_dir))
        entries = score(user_hooks, user_model, body)

    assert (user_model.spec.height, user_model.spec.width) == (64, 48)
    assert user_model.spec.channels == 1
    assert_prediction(entries[0], "a", labels)
    assert "img is not valid base64" in entries[1]["error"]


@pytest.fixture(scope="module")
def demo_weights(repo_root: Path) -> Path:
    return repo_root / "model" / "weights" / "covid-ct-densenet-demo.keras"


GOOD_LABELS = 'class_labels: ["0", "1"]\n'


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (None, r"model-settings.yaml does not exist"),
        ("weights: [\n", r"not valid YAML"),
        ("- a list\n", r"expected a mapping with the keys weights, class_labels"),
        (f"weights: w/demo.keras\n{GOOD_LABELS}extra: 1\n", r"unknown key 'extra'"),
        ("weights: w/demo.keras\n", r"the key 'class_labels' is missing"),
        (
            f"weights: w/absent.keras\n{GOOD_LABELS}",
            r"weights file .*absent.keras does not exist",
        ),
        (
            f"weights: ../demo.keras\n{GOOD_LABELS}",
            r"must be a path inside the model folder",
        ),
        (
            f"weights: w/model.pkl\n{GOOD_LABELS}",
            r"must be a Keras file ending in .h5 or .keras",
        ),
        ("weights: w/demo.keras\nclass_labels: [0, 1]\n", r"quote numbers"),
        ('weights: w/demo.keras\nclass_labels: ["1"]\n', r"at least two labels"),
        ('weights: w/demo.keras\nclass_labels: ["a", "a"]\n', r"has a label twice"),
        (
            'weights: w/demo.keras\nclass_labels: ["a", "b", "c"]\n',
            r"has 1 output\(s\) but model-settings.yaml lists 3 class_labels "
            r"\['a', 'b', 'c'\]; it needs two labels for one sigmoid output",
        ),
        (f"weights: w/broken.keras\n{GOOD_LABELS}", r"cannot load the Keras model"),
    ],
)
def test_bad_settings_fail_load_model_with_a_clear_message(
    hooks: ModuleType,
    demo_weights: Path,
    tmp_path: Path,
    settings: str | None,
    message: str,
) -> None:
    (tmp_path / "w").mkdir()
    shutil.copy(demo_weights, tmp_path / "w" / "demo.keras")
    (tmp_path / "w" / "broken.keras").write_text("not a zip file")
    if settings is not None:
        write_settings(tmp_path, settings)

    with pytest.raises(ValueError, match=message):
        hooks.load_model(str(tmp_path))


def test_a_model_without_softmax_is_refused(hooks: ModuleType, tmp_path: Path) -> None:
    save_keras_model(tmp_path / "w" / "logits.keras", (32, 32, 3), 3, None)
    write_settings(tmp_path, 'weights: w/logits.keras\nclass_labels: ["a", "b", "c"]\n')

    with pytest.raises(ValueError, match="not probabilities; its last layer needs"):
        hooks.load_model(str(tmp_path))


def test_a_model_without_a_fixed_input_size_is_refused(
    hooks: ModuleType, tmp_path: Path
) -> None:
    save_keras_model(tmp_path / "w" / "any.keras", (None, None, 3), 1, "sigmoid")
    write_settings(tmp_path, f"weights: w/any.keras\n{GOOD_LABELS}")

    with pytest.raises(ValueError, match=r"input shape is \(None, None, None, 3\)"):
        hooks.load_model(str(tmp_path))


# --- the model folder stands alone -------------------------------------------


def test_model_folder_has_one_custom_py(repo_root: Path) -> None:
    # DRUM searches the code folder recursively and refuses a second one.
    found = [p for p in (repo_root / "model").rglob("custom.py")]

    assert found == [repo_root / "model" / "custom.py"]


def test_model_code_never_imports_drtool(repo_root: Path) -> None:
    for path in (repo_root / "model").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not [n for n in names if n.split(".")[0] == "drtool"], path


def test_training_is_not_uploaded(repo_root: Path) -> None:
    patterns = (repo_root / "model" / ".drtoolignore").read_text().split()

    assert "training/" in patterns
