"""Load the Keras model named by model-settings.yaml and check it fits.

Everything a request needs is read from the loaded model itself (input
size, channels, number of outputs), so another model with another shape
drops in by changing model-settings.yaml only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.preprocessing import InputSpec
from utils.settings import ModelSettings, read_settings

# A batch whose probabilities stray further than this from summing to one
# did not come from a softmax: a final layer without it gives logits.
SUM_TOLERANCE = 1e-3

# Batches up to this many rows go through one direct call of the model;
# larger ones through predict, PREDICT_BATCH_ROWS at a time (see raw_outputs).
DIRECT_CALL_ROWS = 64
PREDICT_BATCH_ROWS = 32


class ModelLoadError(ValueError):
    """The weights cannot be loaded or do not fit the settings."""


@dataclass(frozen=True)
class LoadedModel:
    """The Keras model with what scoring needs to know about it."""

    model: Any
    settings: ModelSettings
    spec: InputSpec

    @property
    def class_labels(self) -> tuple[str, ...]:
        return self.settings.class_labels

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Return one row of class probabilities per input, labels in order."""
        outputs = np.asarray(self.raw_outputs(batch), dtype=np.float64)
        if outputs.shape[1] == 1:
            # One sigmoid unit: P(last label). Two labels, so the other is 1 - p.
            return np.concatenate([1.0 - outputs, outputs], axis=1)
        # A float32 softmax can miss a sum of one by a few ulps; renormalise so
        # the response and the MLOps report add up exactly.
        return outputs / outputs.sum(axis=1, keepdims=True)

    def raw_outputs(self, batch: np.ndarray) -> Any:
        """Run the model once over the whole batch.

        A direct call is faster than ``predict`` for the batches a request
        carries (demo model, 2 CPUs, median ms, call vs predict: 1 row 21 vs
        39, 16 rows 43 vs 50, 64 rows 73 vs 79), since predict sets up a
        dataset and callbacks each time. But a direct call holds the whole
        batch's activations at once, so past ``DIRECT_CALL_ROWS`` predict
        takes over, as fast there (256 rows: 207 vs 210) and bounded in memory.
        """
        if len(batch) <= DIRECT_CALL_ROWS:
            return self.model(batch, training=False)
        return self.model.predict(batch, batch_size=PREDICT_BATCH_ROWS, verbose=0)


def load(code_dir: Path) -> LoadedModel:
    """Read the settings, load the weights once, and check they agree."""
    settings = read_settings(code_dir)
    try:
        model = keras.models.load_model(settings.weights, compile=False)
    except Exception as exc:
        # Keras raises many types for a bad file (OSError, ValueError,
        # TypeError from deserialisation); all mean the same to the user.
        raise ModelLoadError(
            f"cannot load the Keras model {settings.weights}: {exc}"
        ) from exc

    spec = input_spec(model, settings.weights)
    check_outputs(model, settings)
    loaded = LoadedModel(model=model, settings=settings, spec=spec)
    warm_up(loaded)
    return loaded


def input_spec(model: Any, weights: Path) -> InputSpec:
    """Read (height, width, channels) from the model's one image input."""
    shapes = model.input_shape
    if isinstance(shapes, list):
        if len(shapes) != 1:
            raise ModelLoadError(
                f"{weights}: the model has {len(shapes)} inputs; "
                f"it must take one image."
            )
        shapes = shapes[0]
    if (
        len(shapes) != 4
        or not all(isinstance(size, int) and size > 0 for size in shapes[1:])
        or shapes[3] not in (1, 3)
    ):
        raise ModelLoadError(
            f"{weights}: the model's input shape is {tuple(shapes)}; it must be "
            f"(batch, height, width, 1 or 3) with fixed sizes."
        )
    return InputSpec(height=shapes[1], width=shapes[2], channels=shapes[3])


def check_outputs(model: Any, settings: ModelSettings) -> None:
    """Check the model's outputs against class_labels."""
    shapes = model.output_shape
    if isinstance(shapes, list) or len(shapes) != 2:
        raise ModelLoadError(
            f"{settings.weights}: the model's output shape is {shapes}; it must "
            f"be (batch, classes)."
        )
    outputs, labels = shapes[1], len(settings.class_labels)
    if outputs == 1 and labels == 2:
        return
    if outputs != labels:
        wanted = f"{outputs} labels, one per output"
        if outputs == 1:
            wanted = "two labels for one sigmoid output"
        raise ModelLoadError(
            f"{settings.weights} has {outputs} output(s) but model-settings.yaml "
            f"lists {labels} class_labels {list(settings.class_labels)}; "
            f"it needs {wanted}."
        )


def warm_up(loaded: LoadedModel) -> None:
    """Predict once on a blank image and check the outputs are probabilities.

    The first call of a Keras model sets up its kernels (demo model: 100 ms
    against 20 ms for the next); doing it here keeps that out of the first
    request, and a model whose last layer has no sigmoid or softmax fails
    to load instead of serving numbers that are not probabilities.
    """
    spec = loaded.spec
    blank = np.zeros((1, spec.height, spec.width, spec.channels), np.float32)
    raw = np.asarray(loaded.model(blank, training=False), dtype=np.float64)
    in_range = np.all((raw >= 0.0) & (raw <= 1.0))
    sums_to_one = raw.shape[1] == 1 or abs(raw.sum() - 1.0) <= SUM_TOLERANCE
    if not (np.all(np.isfinite(raw)) and in_range and sums_to_one):
        raise ModelLoadError(
            f"{loaded.settings.weights}: the model's outputs {raw.tolist()} are "
            f"not probabilities; its last layer needs a sigmoid (one output) or "
            f"a softmax (several)."
        )
