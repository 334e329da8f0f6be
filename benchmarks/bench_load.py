"""`drtool load` on a data.txt of 10,000 lines, against simply reading the files.

    .venv/bin/python -m benchmarks.bench_load [--rows 10000]

The reference reads data.txt and every image it lists, once per line, in a
fresh process. Both run on the same files, warm in the page cache after a
first untimed pass, in this one run. A second reference writes as many bytes
as load's outputs hold, and fsyncs them: the least any loader that writes
those files must do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.common import DRTOOL, make_dataset, ratio, run, source_slices

WRITE_ONLY = """
import os, sys
block, left = b"A" * (1 << 20), int(sys.argv[2])
with open(sys.argv[1], "wb") as handle:
    while left > 0:
        left -= handle.write(block[: min(len(block), left)])
    handle.flush()
    os.fsync(handle.fileno())
"""

READ_ONLY = """
import sys
from pathlib import Path
folder = Path(sys.argv[1])
total = 0
for line in (folder / "data.txt").read_text().splitlines():
    total += len((folder / "images" / line.split()[0]).read_bytes())
print(total)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()

    slices, origin = source_slices()
    with tempfile.TemporaryDirectory(prefix="drtool-bench-") as scratch:
        folder = make_dataset(Path(scratch) / "data", args.rows, slices)
        out = Path(scratch) / "out"
        out.mkdir()
        read_files = [sys.executable, "-c", READ_ONLY, str(folder)]
        load = [
            DRTOOL,
            "--config",
            str(write_config(Path(scratch))),
            "load",
            str(folder),
            "--images",
            str(folder / "images"),
            "--out",
            str(out),
        ]

        run(read_files)  # warm the page cache for both
        read_seconds, stdout = run(read_files)
        megabytes = int(stdout) / 1e6
        load_seconds, _ = run(load)
        written_bytes = sum(f.stat().st_size for f in out.glob("*.csv"))
        written = written_bytes / 1e6
        for csv_file in out.glob("*.csv"):
            csv_file.unlink()  # room on disk for the write reference
        sink = Path(scratch) / "sink"
        write_seconds, _ = run(
            [sys.executable, "-c", WRITE_ONLY, str(sink), str(written_bytes)]
        )

    print(f"{args.rows} lines over {origin}: {megabytes:.0f} MB of images\n")
    print(figures("reading the files", read_seconds, args.rows, megabytes))
    print(
        figures("drtool load", load_seconds, args.rows, megabytes)
        + f"  ({written:.0f} MB of CSV written)"
    )
    print(
        f"{'writing that much':18s} {write_seconds:6.2f} s  "
        f"(the same {written:.0f} MB, fsynced: what any loader must write)"
    )
    print(
        f"\ndrtool load / reading the files: {ratio(load_seconds, read_seconds)} "
        f"the time (target at most 2x)"
    )
    print(
        f"writing the output alone / reading the files: "
        f"{ratio(write_seconds, read_seconds)}"
    )
    print(
        f"drtool load / writing the output alone: {ratio(load_seconds, write_seconds)}"
    )


def figures(name: str, seconds: float, rows: int, megabytes: float) -> str:
    return (
        f"{name:18s} {seconds:6.2f} s {rows / seconds:8.0f} slices/s "
        f"{megabytes / seconds:7.0f} MB/s"
    )


def write_config(folder: Path) -> Path:
    config = folder / "config.yaml"
    config.write_text("")  # the defaults: the example's binary label map
    return config


if __name__ == "__main__":
    main()
