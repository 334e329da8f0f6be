"""config.yaml: its schema, where it is found, and its validation.

Precedence, highest first: a command-line option, then config.yaml, then the
defaults written below. Relative paths in config.yaml are relative to the
folder that holds config.yaml, so the tool works from any working directory;
paths given on the command line are relative to where the command runs.

The API token is never part of the configuration: see ``credentials``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from drtool.errors import ConfigError

CONFIG_FILE_NAME = "config.yaml"
CONFIG_ENV_VAR = "DRTOOL_CONFIG"


@dataclass(frozen=True)
class DataRobotSettings:
    # The token never lives here: it comes from the environment, .env or the
    # SDK's drconfig.yaml (see drtool.credentials). DATAROBOT_ENDPOINT and
    # .env override this; empty: drconfig.yaml's, else DataRobot's cloud.
    endpoint: str = ""
    # Seconds to wait for a TCP connection to DataRobot.
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class EnvironmentSettings:
    dir: Path = Path("environment")
    name: str = "drtool-environment"
    description: str = ""
    programming_language: Literal["python", "r", "java", "other"] = "python"


@dataclass(frozen=True)
class ModelSettings:
    dir: Path = Path("model")
    name: str = "drtool-model"
    description: str = ""
    # The label space of the predictions.
    target_type: Literal["binary", "multiclass"] = "binary"
    # DataRobot's "target name" of a typed model: the column the actuals fill.
    target_name: str = "label"
    # Binary: [negative, positive]. Multiclass: in the order of the model's outputs.
    class_labels: list[str] = field(default_factory=lambda: ["0", "1"])
    # "typed-unstructured" is DataRobot's Unstructured (Binary/Multiclass) kind,
    # which tracks accuracy; "unstructured" is plain Unstructured, which cannot.
    datarobot_kind: Literal["typed-unstructured", "unstructured"] = "typed-unstructured"
    memory_mb: int | None = None
    replicas: int | None = None
    network_egress: Literal["none", "public"] = "none"
    runtime_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def positive_label(self) -> str:
        return self.class_labels[-1]

    @property
    def negative_label(self) -> str:
        return self.class_labels[0]


@dataclass(frozen=True)
class DataSettings:
    # Default DATASET_DIR of `drtool load`: it holds data.txt, and the CSVs are
    # written there unless --out says otherwise.
    dir: Path = Path("data")
    # Default image folder of `drtool load`.
    images: Path = Path("data/images")
    # data.txt class -> label of the deployed model. Lines whose class is
    # missing here are reported as "unknown class".
    label_map: dict[int, str] = field(default_factory=lambda: {0: "0", 1: "0", 2: "1"})
    # Images with more pixels than this are refused before decoding
    # (decompression bombs); a CT slice has about 262,144.
    max_image_pixels: int = 50_000_000


@dataclass(frozen=True)
class LocalServerSettings:
    # Address of a DRUM server that is already running; empty: drtool starts one.
    address: str = ""
    # Seconds to wait for a started server to load the model and answer.
    start_timeout: float = 180.0
    # DRUM (gunicorn) worker processes. Two on this 2-core machine: decoding
    # images is single-threaded Python work, so one process per core wins
    # (benchmarks/README.md: 1.35x one worker's throughput).
    workers: int = 2


@dataclass(frozen=True)
class PredictSettings:
    # single: one request at a time; multi: `concurrency` requests at a time.
    mode: Literal["single", "multi"] = "multi"
    # Measured best here (benchmarks/README.md): enough rows per request to
    # batch the model's predict, one request in flight per DRUM worker.
    rows_per_request: int = 32
    concurrency: int = 2
    # Seconds before one prediction request is abandoned.
    request_timeout: float = 300.0
    # Requests are split to stay under this many bytes (DataRobot: 50 MB).
    max_request_bytes: int = 50 * 1024 * 1024
    local: LocalServerSettings = field(default_factory=LocalServerSettings)


@dataclass(frozen=True)
class TimeoutSettings:
    """Deadlines, in seconds, of the long jobs DataRobot runs for a release."""

    environment_build: float = 3600.0
    dependency_build: float = 2400.0
    model_test: float = 1800.0
    deployment: float = 1800.0
    # Interval between two polls of a running job.
    poll_interval: float = 5.0


@dataclass(frozen=True)
class ReleaseSettings:
    # Block the release when the model test ends with warnings.
    block_on_test_warning: bool = False
    # Registered model that collects the versions of this custom model.
    registered_model_name: str = ""
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)


@dataclass(frozen=True)
class DeploymentSettings:
    label: str = "drtool deployment"
    description: str = ""
    importance: Literal["CRITICAL", "HIGH", "MODERATE", "LOW"] = "LOW"
    # Exactly one of these may be set; neither: DataRobot's default server.
    prediction_environment_id: str = ""
    prediction_server_id: str = ""
    # Column of the prediction input that carries the association id.
    association_id_column: str = "id"
    replacement_reason: Literal[
        "ACCURACY",
        "DATA_DRIFT",
        "ERRORS",
        "SCHEDULED_REFRESH",
        "SCORING_SPEED",
        "OTHER",
    ] = "OTHER"
    # A deployment made outside drtool; empty: the one `drtool release` made.
    id: str = ""


@dataclass(frozen=True)
class ActualsSettings:
    # DataRobot accepts at most 10,000 actuals per request.
    batch_size: int = 10_000


@dataclass(frozen=True)
class Settings:
    datarobot: DataRobotSettings = field(default_factory=DataRobotSettings)
    environment: EnvironmentSettings = field(default_factory=EnvironmentSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    predict: PredictSettings = field(default_factory=PredictSettings)
    release: ReleaseSettings = field(default_factory=ReleaseSettings)
    deployment: DeploymentSettings = field(default_factory=DeploymentSettings)
    actuals: ActualsSettings = field(default_factory=ActualsSettings)
    # The folder of config.yaml: relative paths above were resolved against it.
    root: Path = Path(".")
    source: Path | None = None

    @property
    def state_file(self) -> Path:
        return self.root / ".drtool-state.json"


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the config file to use: the option, $DRTOOL_CONFIG, or a search.

    The search looks for config.yaml in the working directory and then in its
    parents, the way git finds its repository.
    """
    chosen = explicit or os.environ.get(CONFIG_ENV_VAR)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist.")
        return path

    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILE_NAME} in {here} or its parents. Run drtool from the "
        f"project folder, or pass --config PATH."
    )


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read, validate and resolve config.yaml (found as ``find_config`` says)."""
    config_path = find_config(path)
    raw = _read_yaml(config_path)
    where = config_path.name
    settings = _build(Settings, raw, where, config_path.parent.resolve())
    settings = dataclasses.replace(
        settings, root=config_path.parent.resolve(), source=config_path
    )
    _check_consistency(settings, where)
    return settings


def default_settings(root: Path) -> Settings:
    """Return the defaults, with relative paths resolved against ``root``."""
    return _build(Settings, {}, "defaults", root.resolve())


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections.")
    return data


def _build(cls: type, raw: Any, where: str, root: Path) -> Any:
    """Build dataclass ``cls`` from ``raw``, naming the key of any problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    known -= {"root", "source"}
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known keys here: "
            f"{', '.join(sorted(known))}."
        )

    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in ("root", "source"):
            continue
        key_path = _join(where, f.name)
        if f.name in raw:
            values[f.name] = _convert(hints[f.name], raw[f.name], key_path, root)
        elif dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = _build(hints[f.name], {}, key_path, root)
        elif hints[f.name] is Path:
            values[f.name] = root / f.default  # type: ignore[operator]
    return cls(**values)


def _join(where: str, key: str) -> str:
    # "config.yaml" + "model" -> "config.yaml: model"; then "model.dir".
    if ": " in where:
        return f"{where}.{key}"
    return f"{where}: {key}"


def _convert(hint: Any, value: Any, key: str, root: Path) -> Any:
    """Check ``value`` against type ``hint`` and return it converted."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, key, root)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key, root)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of: {', '.join(args)}.")
        return value
    if origin is list:
        return _convert_list(args[0], value, key, root)
    if origin is dict:
        return _convert_dict(args, value, key, root)
    if hint is Path:
        return _convert_path(value, key, root)
    if hint in _SCALARS:
        return _convert_scalar(hint, value, key)
    if hint is Any:
        return value
    raise TypeError(f"settings schema: no conversion for {hint!r} at {key}")


# type -> (accepted Python types, what to tell the user)
_SCALARS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "a whole number"),
    float: ((int, float), "a number"),
    str: ((str,), "text (quote it)"),
}


def _convert_scalar(hint: type, value: Any, key: str) -> Any:
    accepted, wanted = _SCALARS[hint]
    # YAML's true/false are ints to Python: never accept them as numbers.
    is_bool_posing = isinstance(value, bool) and hint is not bool
    if is_bool_posing or not isinstance(value, accepted):
        raise ConfigError(f"{key}: expected {wanted}, got {value!r}.")
    # An int where a float is wanted becomes a float; the rest pass unchanged.
    converted: Any = hint(value)
    return converted


def _convert_path(value: Any, key: str, root: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a path, got {value!r}.")
    return root / Path(value).expanduser()


def _convert_list(item: Any, value: Any, key: str, root: Path) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {value!r}.")
    return [_convert(item, v, f"{key}[{i}]", root) for i, v in enumerate(value)]


def _convert_dict(
    args: tuple[Any, ...], value: Any, key: str, root: Path
) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}.")
    key_type, value_type = args
    return {
        _convert(key_type, k, f"{key} key {k!r}", root): _convert(
            value_type, v, f"{key}.{k}", root
        )
        for k, v in value.items()
    }


def _check_consistency(settings: Settings, where: str) -> None:
    """Check the rules that tie several keys together."""
    model = settings.model
    if len(set(model.class_labels)) != len(model.class_labels):
        raise ConfigError(f"{where}: model.class_labels has a label twice.")
    if model.target_type == "binary" and len(model.class_labels) != 2:
        raise ConfigError(
            f"{where}: model.class_labels must have two labels for a binary "
            f"model, [negative, positive]; it has {len(model.class_labels)}."
        )
    if model.target_type == "multiclass" and len(model.class_labels) < 3:
        raise ConfigError(
            f"{where}: model.class_labels needs at least three labels for a "
            f"multiclass model; use target_type: binary for two."
        )
    stray = sorted(set(settings.data.label_map.values()) - set(model.class_labels))
    if stray:
        raise ConfigError(
            f"{where}: data.label_map maps to {stray[0]!r}, which is not in "
            f"model.class_labels {model.class_labels}."
        )
    deployment = settings.deployment
    if deployment.prediction_environment_id and deployment.prediction_server_id:
        raise ConfigError(
            f"{where}: set deployment.prediction_environment_id or "
            f"deployment.prediction_server_id, not both."
        )
    for name in ("rows_per_request", "concurrency", "max_request_bytes"):
        if getattr(settings.predict, name) < 1:
            raise ConfigError(f"{where}: predict.{name} must be at least 1.")
    _check_positive(where, "predict.request_timeout", settings.predict.request_timeout)
    local = settings.predict.local
    _check_positive(where, "predict.local.start_timeout", local.start_timeout)
    _check_positive(where, "predict.local.workers", local.workers)
    _check_positive(where, "data.max_image_pixels", settings.data.max_image_pixels)
    for name, value in vars(settings.release.timeouts).items():
        _check_positive(where, f"release.timeouts.{name}", value)
    if not 1 <= settings.actuals.batch_size <= 10_000:
        raise ConfigError(
            f"{where}: actuals.batch_size must be from 1 to 10000 "
            f"(DataRobot's limit per request)."
        )


def _check_positive(where: str, key: str, value: float) -> None:
    # "not value > 0" also refuses NaN, which YAML spells .nan.
    if not value > 0:
        raise ConfigError(f"{where}: {key} must be more than 0, got {value!r}.")
