"""Predictions per second: the model's own limit, drtool, and a manual baseline.

    .venv/bin/python -m benchmarks.bench_predict [--rows 1000] [--sweep]

All three are measured in this one run, on the same rows and machine:

1. the limit: the example model's hooks called in this process (CSV parsing,
   base64 and image decoding, preprocessing, ``predict`` in batches);
2. ``drtool predict --target local`` with its default settings: end to end
   (server start included) and in steady state (from the first request on);
3. a baseline client like the manual workflow's predict.py: one row per
   request, CSV with the DataFrame index column, a new connection per request,
   a thread pool of the CPU count, against a DRUM server started the same way.

``--sweep`` also times drtool over rows per request, concurrency and DRUM
workers, to choose the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import requests

from benchmarks.common import (
    DRTOOL,
    REPO,
    config_for,
    make_dataset,
    ratio,
    run,
    source_slices,
)
from drtool.predict.drum import DrumServer
from drtool.settings import LocalServerSettings

# Batch size 1 is what a one-row-per-request client gets from the model.
LIMIT_BATCHES = (1, 16, 32, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()

    slices, origin = source_slices()
    with tempfile.TemporaryDirectory(prefix="drtool-bench-") as scratch:
        folder = make_dataset(Path(scratch), args.rows, slices)
        config = config_for(folder)
        run([DRTOOL, "--config", str(config), "load", str(folder)])
        prepared = folder / "prepared_data.csv"
        print(f"{args.rows} rows from {origin}; {os.cpu_count()} CPUs\n")

        limit, one_row = measure_limit(prepared)
        e2e, steady = measure_drtool(config, prepared, folder / "predictions.csv")
        baseline = measure_baseline(prepared)
        print_summary(limit, one_row, e2e, steady, baseline)
        if args.sweep:
            sweep(folder, prepared)


def measure_limit(prepared: Path) -> tuple[float, float]:
    """Slices per second of the model's hooks in this process: best, and one row."""
    sys.path.insert(0, str(REPO / "model"))
    import custom  # the model's DRUM hooks

    model = custom.load_model(str(REPO / "model"))
    rows = pd.read_csv(prepared)
    rates: dict[int, float] = {}
    for batch in LIMIT_BATCHES:
        bodies = [
            rows.iloc[i : i + batch].to_csv(index=False)
            for i in range(0, len(rows), batch)
        ]
        started = time.perf_counter()
        for body in bodies:
            custom.score_unstructured(model, body, mimetype="text/csv")
        rate = len(rows) / (time.perf_counter() - started)
        print(f"limit, in process, batches of {batch:3d}: {rate:7.1f} slices/s")
        rates[batch] = rate
    return max(rates.values()), rates[1]


def measure_drtool(
    config: Path, prepared: Path, output: Path, *options: str
) -> tuple[float, float]:
    """Slices per second of `drtool predict`: end to end, and steady state."""
    command = [
        DRTOOL,
        "--config",
        str(config),
        "predict",
        "--target",
        "local",
        "--input",
        str(prepared),
        "--output",
        str(output),
        "--json",
        "--no-progress",
        *options,
    ]
    seconds, stdout = run(command)
    output.unlink()
    report = json.loads(stdout)
    e2e = report["rows"] / seconds
    steady = report["rows"] / report["seconds"]
    label = " ".join(options) or "defaults"
    print(
        f"drtool predict ({label}): {e2e:7.1f} slices/s end to end, "
        f"{steady:7.1f} steady"
    )
    return e2e, steady


def measure_baseline(prepared: Path) -> float:
    """Slices per second of a one-row-per-request client like the manual one."""
    rows = pd.read_csv(prepared)
    # The same server drtool starts with its defaults.
    workers = LocalServerSettings().workers
    with DrumServer(REPO / "model", workers=workers) as server:
        url = f"{server.url}/predictUnstructured/"

        def send(index: int) -> int:
            body = rows.iloc[[index]].to_csv()  # index column included
            answer = requests.post(
                url, data=body, timeout=300, headers={"Content-Type": "text/csv"}
            )
            return answer.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            statuses = list(pool.map(send, range(len(rows))))
        rate = len(rows) / (time.perf_counter() - started)
    if set(statuses) != {200}:
        raise SystemExit(f"baseline got statuses {sorted(set(statuses))}")
    print(
        f"baseline, one row per request ({workers} DRUM workers): "
        f"{rate:7.1f} slices/s steady"
    )
    return rate


def print_summary(
    limit: float, one_row: float, e2e: float, steady: float, baseline: float
) -> None:
    print()
    print(
        f"drtool steady / in-process limit: {ratio(steady, limit)} "
        f"(target at least 0.70x)"
    )
    print(f"drtool end to end / limit:        {ratio(e2e, limit)}")
    print(
        f"drtool steady / baseline:         {ratio(steady, baseline)} "
        f"(target at least 5x)"
    )
    print(
        f"the model batched / one row at a time, in process: "
        f"{ratio(limit, one_row)} (what batching can gain at most, per process)"
    )


def sweep(folder: Path, prepared: Path) -> None:
    """Time drtool over its settings, to pick the defaults."""
    print("\nsweep: workers, rows per request, concurrency -> steady slices/s")
    for workers in (1, 2):
        config = config_for(folder, local=f"{{workers: {workers}}}")
        for rows_per_request in (8, 16, 32, 64):
            for concurrency in (1, 2, 4):
                options = (
                    "--rows-per-request",
                    str(rows_per_request),
                    "--concurrency",
                    str(concurrency),
                )
                print(f"  workers {workers}: ", end="", flush=True)
                measure_drtool(config, prepared, folder / "sweep.csv", *options)


if __name__ == "__main__":
    main()
