"""What the benchmark scripts share: data sets of real slices, timing, memory.

The slices come from ../shared/data/ct (or $DRTOOL_SHARED_CT) when present:
2 COVIDx PNGs and 30 JPEGs of one volume, 512x512. Without it, the example's
images made from pydicom's CT_small.dcm (128x128) stand in, and every script
says so, since smaller images make every figure faster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DRTOOL = str(VENV_BIN / "drtool")
SHARED_CT = Path(os.environ.get("DRTOOL_SHARED_CT", REPO.parent / "shared/data/ct"))


@dataclass(frozen=True)
class Slice:
    """One source image and the data.txt fields after its name."""

    path: Path
    fields: str


def source_slices() -> tuple[list[Slice], str]:
    """Return the real slices to repeat, and a line saying where they are from."""
    if (SHARED_CT / "covidx" / "data.txt").is_file():
        slices = _slices_of(SHARED_CT / "covidx", SHARED_CT / "covidx")
        slices += _slices_of(SHARED_CT / "volume", SHARED_CT / "volume" / "images")
        return slices, f"{len(slices)} real slices of {SHARED_CT} (512x512)"
    example = REPO / "example" / "data"
    subprocess.run(
        [sys.executable, str(REPO / "example" / "make_example.py"), str(example)],
        check=True,
        capture_output=True,
    )
    slices = _slices_of(example, example / "images")
    return slices, f"{len(slices)} example slices from pydicom (128x128; no ../shared)"


def _slices_of(folder: Path, images: Path) -> list[Slice]:
    slices = []
    for line in (folder / "data.txt").read_text().splitlines():
        name, *fields = line.split()
        if len(fields) == 4:  # no class: give one, so actuals exist too
            fields.insert(0, "0")
        slices.append(Slice(images / name, " ".join(fields)))
    return slices


def make_dataset(folder: Path, rows: int, slices: list[Slice]) -> Path:
    """Write data.txt of ``rows`` lines cycling over ``slices``; return folder."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for item in slices:
        shutil.copyfile(item.path, images / item.path.name)
    lines = [
        f"{slices[i % len(slices)].path.name} {slices[i % len(slices)].fields}"
        for i in range(rows)
    ]
    (folder / "data.txt").write_text("\n".join(lines) + "\n")
    return folder


def run(command: list[str]) -> tuple[float, str]:
    """Run ``command``; return its wall seconds and its stdout."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def peak_rss_of(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return its wall seconds and its own peak RSS in MB.

    The peak is the kernel's high-water mark (VmHWM) of the command's process,
    read until it exits: a DRUM server it starts runs in other processes and
    is not counted.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    status, peak_kb = Path(f"/proc/{process.pid}/status"), 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _high_water_kb(status))
        time.sleep(0.02)
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return time.perf_counter() - started, peak_kb / 1024


def _high_water_kb(status: Path) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def config_for(folder: Path, **predict: object) -> Path:
    """Write a config.yaml using the repository's model, data in ``folder``."""
    settings = "\n".join(f"  {key}: {value}" for key, value in predict.items())
    config = folder / "config.yaml"
    config.write_text(
        f"model:\n  dir: {REPO / 'model'}\n"
        f"data:\n  dir: {folder}\n  images: {folder / 'images'}\n"
        + (f"predict:\n{settings}\n" if predict else "")
    )
    return config


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "n/a"
