"""Train the demonstration weights of the chest-CT classifier.

A DEMONSTRATION MODEL, NOT A CLINICAL ONE. The shipped weights
(model/weights/covid-ct-densenet-demo.keras) were trained on exactly two
real CT slices from COVIDx CT-2A, one COVID-19 and one normal (the
``covidx`` folder of the project's shared data; CNCB 2019nCoV data, CC BY
3.0 CN), multiplied by augmentation. Two slices cannot teach anything about
COVID-19: the model exists so drtool has weights with the same interface as
the team's original phase-1.h5 (128x128x3 input, one sigmoid unit giving
P(COVID-19)), and its outputs say nothing about any patient.

It reads the COVIDx data.txt format, ``{image file} {class} {x1} {y1} {x2}
{y2}`` (classes 0 normal, 1 pneumonia, 2 COVID-19; the target is 1 for
class 2, else 0), and prepares every image with the serving code in
model/utils, so training and serving see the same pixels. Run from the
repository root:

    python model/training/train.py --data ../shared/data/ct/covidx \
        --images ../shared/data/ct/covidx \
        --out model/weights/covid-ct-densenet-demo.keras

The seeds are fixed and TensorFlow's ops made deterministic, so a rerun on
the same machine and versions writes the same weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Quiet TensorFlow's start-up banner; it must be set before the import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# The serving code lives one folder up, as the ``utils`` package DRUM sees.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.preprocessing import (  # noqa: E402
    Box,
    InputSpec,
    crop_to_box,
    open_image,
    to_model_input,
    to_rgb8,
)

SPEC = InputSpec(height=128, width=128, channels=3)
COVID_CLASS = 2

# Augmentation: each sample is a random sub-crop keeping this share of the
# box's width and height, maybe mirrored, with its brightness scaled.
MIN_CROP_SHARE = 0.8
BRIGHTNESS = (0.8, 1.2)


@dataclass(frozen=True)
class Slice:
    name: str
    pixels: np.ndarray  # H x W x 3 uint8, from the serving code's to_rgb8
    box: Box
    target: int


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(args.seed)

    slices = read_slices(args.data / "data.txt", args.images or args.data)
    print(
        f"{len(slices)} slices: "
        + ", ".join(f"{s.name} (target {s.target})" for s in slices)
    )
    model = build_model(SPEC)
    print(f"model: {model.count_params():,} parameters")

    started = time.perf_counter()
    train(model, slices, rng, args.epochs, args.samples_per_slice)
    print(f"trained in {time.perf_counter() - started:.1f} s")

    report_whole_boxes(model, slices)
    save_for_serving(model, args.out)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="folder holding data.txt"
    )
    parser.add_argument(
        "--images", type=Path, help="folder of the image files (default: --data)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="weights file to write, .keras"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--samples-per-slice",
        type=int,
        default=64,
        help="augmented samples of each slice per epoch",
    )
    parser.add_argument("--seed", type=int, default=20210401)
    return parser.parse_args(argv)


def read_slices(data_txt: Path, images: Path) -> list[Slice]:
    """Read data.txt and decode every image with the serving code."""
    slices = []
    for number, line in enumerate(data_txt.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 6:
            sys.exit(
                f"{data_txt} line {number}: expected 6 fields "
                f"(file class x1 y1 x2 y2), got {len(fields)}"
            )
        name, label, *box = fields
        image = open_image((images / name).read_bytes())
        target = int(int(label) == COVID_CLASS)
        slices.append(Slice(name, to_rgb8(image), Box(*map(int, box)), target))
    return slices


def build_model(spec: InputSpec) -> keras.Model:
    """A small DenseNet: two dense blocks joined by a transition."""
    inputs = keras.Input((spec.height, spec.width, spec.channels), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = dense_block(x, layers=4, growth=12)
    x = transition(x, filters=32)
    x = dense_block(x, layers=4, growth=12)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_covid19")(x)
    return keras.Model(inputs, outputs, name="covid_ct_densenet_demo")


def dense_block(x: keras.KerasTensor, layers: int, growth: int) -> keras.KerasTensor:
    """Each layer sees the concatenation of every earlier layer's output."""
    for _ in range(layers):
        y = keras.layers.BatchNormalization()(x)
        y = keras.layers.ReLU()(y)
        y = keras.layers.Conv2D(growth, 3, padding="same", use_bias=False)(y)
        x = keras.layers.Concatenate()([x, y])
    return x


def transition(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    """Compress the channels with a 1x1 convolution and halve the size."""
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False)(x)
    return keras.layers.AveragePooling2D(2)(x)


def train(
    model: keras.Model,
    slices: list[Slice],
    rng: np.random.Generator,
    epochs: int,
    samples_per_slice: int,
) -> None:
    """Fit on fresh augmented samples each epoch, printing loss and accuracy."""
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    for epoch in range(1, epochs + 1):
        x, y = augmented_set(slices, rng, samples_per_slice)
        history = model.fit(x, y, batch_size=16, epochs=1, shuffle=True, verbose=0)
        loss = history.history["loss"][-1]
        accuracy = history.history["accuracy"][-1]
        print(f"epoch {epoch:2d}: loss {loss:.4f}, accuracy {accuracy:.3f}")


def augmented_set(
    slices: list[Slice], rng: np.random.Generator, per_slice: int
) -> tuple[np.ndarray, np.ndarray]:
    samples = [(augment(s, rng), s.target) for s in slices for _ in range(per_slice)]
    x = np.stack([sample for sample, _ in samples])
    y = np.array([target for _, target in samples], dtype=np.float32)
    return x, y


def augment(piece: Slice, rng: np.random.Generator) -> np.ndarray:
    """One random variant of a slice, prepared exactly as serving prepares it."""
    crop = crop_to_box(piece.pixels, random_sub_box(piece, rng))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    factor = rng.uniform(*BRIGHTNESS)
    crop = np.clip(np.rint(crop * factor), 0, 255).astype(np.uint8)
    return to_model_input(crop, SPEC)


def random_sub_box(piece: Slice, rng: np.random.Generator) -> Box:
    """A random box inside the slice's box (itself clamped to the image)."""
    height, width = piece.pixels.shape[:2]
    x1, y1 = max(piece.box.x1, 0), max(piece.box.y1, 0)
    x2, y2 = min(piece.box.x2, width), min(piece.box.y2, height)
    crop_w = int(rng.integers(int((x2 - x1) * MIN_CROP_SHARE), x2 - x1 + 1))
    crop_h = int(rng.integers(int((y2 - y1) * MIN_CROP_SHARE), y2 - y1 + 1))
    left = x1 + int(rng.integers(0, x2 - x1 - crop_w + 1))
    top = y1 + int(rng.integers(0, y2 - y1 - crop_h + 1))
    return Box(left, top, left + crop_w, top + crop_h)


def report_whole_boxes(model: keras.Model, slices: list[Slice]) -> None:
    """Print P(COVID-19) of each slice's own, unaugmented box."""
    x = np.stack([to_model_input(crop_to_box(s.pixels, s.box), SPEC) for s in slices])
    for piece, p in zip(slices, model(x, training=False).numpy()[:, 0], strict=True):
        print(f"{piece.name}: target {piece.target}, P(COVID-19) = {p:.4f}")


def save_for_serving(model: keras.Model, out: Path) -> None:
    """Save the weights in a fresh, uncompiled copy: no optimizer state."""
    serving = build_model(SPEC)
    serving.set_weights(model.get_weights())
    out.parent.mkdir(parents=True, exist_ok=True)
    serving.save(out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    sys.exit(main())
