"""`drtool release --target local`: DataRobot's test, played on this machine.

The model files a release would upload (the same selection, nothing more) are
copied into a scratch folder and served there by a real DRUM server on
127.0.0.1. A few rows of prepared_data.csv are scored through it, and every
row must come back with a label of ``model.class_labels``. A file missing
from the selection (left out by .drtoolignore, say) therefore fails here, as
it would in DataRobot.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import requests

from drtool.bundle import EXECUTABLE_MODE, FILE_MODE, FileSet
from drtool.errors import ConnectionFailure, InputError, ModelTestFailed
from drtool.predict.chunks import Row, chunk_rows, read_rows
from drtool.predict.drum import DrumServer
from drtool.predict.sender import RowResult, parse_predictions, server_message
from drtool.predict.targets import local_target
from drtool.settings import Settings

log = logging.getLogger(__name__)

SAMPLE_ROWS = 5
PREPARED_FILE = "prepared_data.csv"


@dataclass(frozen=True)
class LocalCheck:
    """What the local validation scored."""

    rows: int
    labels: dict[str, str]


def validate_locally(settings: Settings, model_files: FileSet) -> LocalCheck:
    """Serve the selected model files with DRUM and score sample rows."""
    body, ids = sample_request(
        settings.data.dir / PREPARED_FILE,
        max_bytes=settings.predict.max_request_bytes,
    )
    local = settings.predict.local
    with tempfile.TemporaryDirectory(prefix="drtool-release-") as scratch:
        code_dir = copy_selection(model_files, Path(scratch) / "model")
        with DrumServer(
            code_dir, workers=local.workers, start_timeout=local.start_timeout
        ) as server:
            results = _score(server, body, ids, settings.predict.request_timeout)
            _check(results, settings.model.class_labels, server)
    log.info("DRUM scored %d sample rows, each with a label.", len(results))
    return LocalCheck(rows=len(results), labels={r.id: r.label for r in results})


def sample_request(
    path: Path, count: int = SAMPLE_ROWS, max_bytes: int = 50 * 1024 * 1024
) -> tuple[bytes, list[str]]:
    """Return a CSV body of the first ``count`` rows of ``path``, and their ids."""
    if not path.is_file():
        raise InputError(
            f"{path} does not exist: the local validation scores a few of its "
            f"rows. Run `drtool load` first (it writes {PREPARED_FILE} into "
            f"data.dir of config.yaml)."
        )
    header, rows = read_rows(path)
    try:
        sample: list[Row] = list(islice(rows, count))
    finally:
        rows.close()  # type: ignore[attr-defined]
    if not sample:
        raise InputError(f"{path} has no rows; run `drtool load` again.")
    # One chunk of all the sample rows: the limit is DataRobot's request size.
    chunk = next(chunk_rows(header, sample, max_rows=count, max_bytes=max_bytes))
    if chunk.oversized:
        raise InputError(f"{path}: row {chunk.ids[0]} is over {max_bytes} bytes.")
    return chunk.body, chunk.ids


def copy_selection(files: FileSet, folder: Path) -> Path:
    """Copy the selected files into ``folder`` with the modes a bundle gives."""
    for item in files.files:
        target = folder / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.source, target)
        target.chmod(EXECUTABLE_MODE if item.executable else FILE_MODE)
    return folder


def _score(
    server: DrumServer, body: bytes, ids: list[str], timeout: float
) -> list[RowResult]:
    target = local_target(server.url)
    try:
        response = requests.post(
            target.url, data=body, headers=target.headers(), timeout=timeout
        )
    except requests.RequestException as exc:
        raise ConnectionFailure(
            f"the local DRUM server did not answer ({type(exc).__name__}). The "
            f"end of its log:\n{server.log_tail()}"
        ) from None
    if response.status_code != 200:
        raise ModelTestFailed(
            f"the model answered HTTP {response.status_code} on DRUM: "
            f"{server_message(response)}. The end of DRUM's log:\n"
            f"{server.log_tail()}"
        )
    return parse_predictions(response, ids)


def _check(results: list[RowResult], labels: list[str], server: DrumServer) -> None:
    problems = [
        f"{r.id}: {r.error or f'label {r.label!r} is not one of {labels}'}"
        for r in results
        if not r.ok or r.label not in labels
    ]
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise ModelTestFailed(
            f"the model did not label every sample row on DRUM:\n{listed}\n"
            f"The end of DRUM's log:\n{server.log_tail()}"
        )
