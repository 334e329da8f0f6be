"""Make the bundled example's data set from the CT slice that ships with pydicom.

A fresh clone has no CT images of its own. pydicom's test data includes a
real one, ``CT_small.dcm`` (128x128, a crop of a chest CT, MIT licence), which
this script renders in several image formats, each a mode the model must
accept, and lists in a data.txt:

    python example/make_example.py example/data

The slice carries no diagnosis. The example labels it class 0 (normal) only so
that the local actuals report has rows to score: those figures exercise the
pipeline and say nothing about the model. One line has no class at all, as a
slice to predict without an actual.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file

# (window centre, window width) in Hounsfield units.
LUNG_WINDOW = (-600, 1500)
SOFT_TISSUE_WINDOW = (40, 400)


def hounsfield(dataset: pydicom.Dataset) -> np.ndarray:
    """Return the slice in Hounsfield units."""
    slope = float(getattr(dataset, "RescaleSlope", 1))
    intercept = float(getattr(dataset, "RescaleIntercept", 0))
    return dataset.pixel_array.astype(np.float64) * slope + intercept


def windowed(units: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Map a CT window onto 8-bit grey levels, as radiology viewers do."""
    centre, width = window
    low = centre - width / 2
    scaled = (units - low) / width * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def write_images(units: np.ndarray, images: Path) -> list[str]:
    """Write the slice in every format of the example; return the file names."""
    images.mkdir(parents=True, exist_ok=True)
    lung = windowed(units, LUNG_WINDOW)
    tissue = windowed(units, SOFT_TISSUE_WINDOW)
    # 16-bit: Hounsfield units shifted to be non-negative, as CT PNGs store them.
    raw16 = np.clip(units + 1024, 0, 65535).astype(np.uint16)

    files = {
        "ct-small-lung.png": Image.fromarray(lung, mode="L"),
        "ct-small-16bit.png": Image.fromarray(raw16),
        "ct-small-tissue-rgb.jpg": Image.fromarray(tissue).convert("RGB"),
        "ct-small-lung-palette.png": Image.fromarray(lung).convert("P"),
    }
    for name, image in files.items():
        image.save(images / name)
    return list(files)


def write_data_txt(folder: Path, names: list[str], size: tuple[int, int]) -> None:
    """List the images in the COVIDx label format: name class x1 y1 x2 y2."""
    width, height = size
    whole = f"0 0 {width} {height}"
    centre = f"{width // 8} {height // 8} {width - width // 8} {height - height // 8}"
    lines = [f"{names[0]} 0 {whole}", f"{names[0]} 0 {centre}"]
    lines += [f"{name} 0 {whole}" for name in names[1:]]
    lines.append(f"{names[-1]} {centre}")  # no class: nothing to score
    (folder / "data.txt").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where data.txt and images/ go")
    folder = parser.parse_args(argv).folder

    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    units = hounsfield(dataset)
    names = write_images(units, folder / "images")
    write_data_txt(folder, names, (units.shape[1], units.shape[0]))
    print(f"Example data set: {folder / 'data.txt'} with {len(names)} images.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
