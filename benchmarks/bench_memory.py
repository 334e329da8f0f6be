"""Peak memory of `drtool load` and `drtool predict` on 1,000 and 10,000 rows.

    .venv/bin/python -m benchmarks.bench_memory [--small 1000] [--large 10000]

Each figure is the peak resident memory of drtool's own process, read from
the kernel while it runs. The DRUM server that `predict` starts is another
process with a fixed model in it, and is not counted. Streaming commands
should show the same peak for both sizes: the target is at most 1.2 times.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import (
    DRTOOL,
    config_for,
    make_dataset,
    peak_rss_of,
    ratio,
    source_slices,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=10_000)
    args = parser.parse_args()

    slices, origin = source_slices()
    print(f"rows from {origin}\n")
    peaks: dict[tuple[str, int], float] = {}
    for rows in (args.small, args.large):
        with tempfile.TemporaryDirectory(prefix="drtool-bench-") as scratch:
            folder = make_dataset(Path(scratch), rows, slices)
            config = str(config_for(folder))
            for command in ("load", "predict"):
                argv = [DRTOOL, "--config", config, command]
                if command == "predict":
                    argv += ["--target", "local", "--no-progress"]
                seconds, peak = peak_rss_of(argv)
                peaks[command, rows] = peak
                print(
                    f"{command:8s} {rows:6d} rows: peak {peak:7.1f} MB "
                    f"({seconds:.1f} s)"
                )

    print()
    for command in ("load", "predict"):
        growth = ratio(peaks[command, args.large], peaks[command, args.small])
        print(
            f"{command}: peak at {args.large} rows / at {args.small} rows = "
            f"{growth} (target at most 1.2x)"
        )


if __name__ == "__main__":
    main()
