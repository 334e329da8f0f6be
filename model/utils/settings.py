"""model-settings.yaml: the model's own settings, read and checked.

The file sits beside custom.py and travels with the model to DataRobot,
where drtool's config.yaml is not available::

    weights: weights/covid-ct-densenet-demo.keras   # relative to the model folder
    class_labels: ["0", "1"]

One sigmoid output is P(last label); N softmax outputs are the labels in
order. Swapping in another Keras model means changing these two keys only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

SETTINGS_FILE = "model-settings.yaml"
WEIGHT_SUFFIXES = (".h5", ".keras")
KEYS = ("weights", "class_labels")


class SettingsError(ValueError):
    """model-settings.yaml is missing or wrong; the message says what to fix."""


@dataclass(frozen=True)
class ModelSettings:
    weights: Path
    class_labels: tuple[str, ...]


def read_settings(code_dir: Path) -> ModelSettings:
    """Read and check ``code_dir``/model-settings.yaml."""
    path = code_dir / SETTINGS_FILE
    raw = _read_mapping(path)
    unknown = sorted(set(map(str, raw)) - set(KEYS))
    if unknown:
        raise SettingsError(
            f"{path}: unknown key {unknown[0]!r}; the keys are {', '.join(KEYS)}."
        )
    missing = [key for key in KEYS if key not in raw]
    if missing:
        raise SettingsError(f"{path}: the key {missing[0]!r} is missing.")

    return ModelSettings(
        weights=_check_weights(raw["weights"], code_dir, path),
        class_labels=_check_labels(raw["class_labels"], path),
    )


def _read_mapping(path: Path) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsError(
            f"{path} does not exist; it names the weights file and the class "
            f"labels of the model."
        ) from None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(
            f"{path}: expected a mapping with the keys {', '.join(KEYS)}."
        )
    return data


def _check_weights(value: Any, code_dir: Path, path: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{path}: weights must be a file path, got {value!r}.")
    relative = PurePosixPath(value.strip())
    # Only files inside the model folder are uploaded to DataRobot.
    if relative.is_absolute() or ".." in relative.parts:
        raise SettingsError(
            f"{path}: weights {value!r} must be a path inside the model folder, "
            f"relative to it."
        )
    if relative.suffix.lower() not in WEIGHT_SUFFIXES:
        raise SettingsError(
            f"{path}: weights {value!r} must be a Keras file ending in "
            f"{' or '.join(WEIGHT_SUFFIXES)}."
        )
    weights = code_dir / relative
    if not weights.is_file():
        raise SettingsError(f"{path}: the weights file {weights} does not exist.")
    return weights


def _check_labels(value: Any, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise SettingsError(
            f"{path}: class_labels must be a list of at least two labels, "
            f"got {value!r}."
        )
    if not all(isinstance(label, str) and label for label in value):
        raise SettingsError(
            f"{path}: every class label must be non-empty text; quote numbers, "
            f'as in ["0", "1"]. Got {value!r}.'
        )
    if len(set(value)) != len(value):
        raise SettingsError(f"{path}: class_labels has a label twice: {value!r}.")
    return tuple(value)
