"""Predictions: stream the prepared rows to a target and write the answers.

The flow is the same for every target: rows are read lazily, grouped into
requests by row count and by bytes, sent by a bounded pool of threads, and
recorded in a journal as they finish (see ``output``), then written in input
order. Only ``targets`` knows where the requests go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from drtool.errors import InputError
from drtool.predict.chunks import Row, chunk_rows, read_rows
from drtool.predict.drum import DrumServer
from drtool.predict.output import Journal, columns, to_record, write_predictions
from drtool.predict.sender import RetryPolicy, RowResult, Sender
from drtool.predict.targets import Target, local_target

log = logging.getLogger(__name__)

# How many failures the report lists by id; all are in the predictions file.
REPORTED_FAILURES = 10


@dataclass(frozen=True)
class SendOptions:
    """How rows are grouped and sent."""

    rows_per_request: int = 32
    concurrency: int = 2
    max_request_bytes: int = 50 * 1024 * 1024
    timeout: float = 300.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class PredictReport:
    """What a prediction run did."""

    target: str
    input: Path
    output: Path
    rows: int = 0
    succeeded: int = 0
    failed: int = 0
    resumed: int = 0
    requests: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def predict_file(
    input_path: Path,
    output_path: Path,
    target: Target,
    class_labels: list[str],
    options: SendOptions,
    on_progress: Callable[[int], None] | None = None,
) -> PredictReport:
    """Predict every row of ``input_path`` on ``target`` into ``output_path``.

    Rows that failed are written with their reason; the caller decides what
    that means for the exit code. An interruption keeps the finished rows in
    the journal, and the next run with the same output resumes from there.
    """
    started = time.monotonic()
    check_paths(input_path, output_path)
    header, rows = read_rows(input_path)
    journal = Journal(output_path, class_labels)
    finished = journal.finished_rows()
    journal.open(finished.values())

    report = PredictReport(
        target=target.describe(), input=input_path, output=output_path
    )
    report.resumed = len(finished)
    run = _Run(journal, class_labels, dict(finished), report, on_progress)
    try:
        chunks = chunk_rows(
            header,
            run.rows_to_send(input_path, rows),
            max_rows=options.rows_per_request,
            max_bytes=options.max_request_bytes,
        )
        sender = Sender(target, timeout=options.timeout, policy=options.policy)
        _send_all(chunks, sender, options.concurrency, run.record)
    except BaseException:
        journal.close()
        raise

    write_predictions(output_path, columns(class_labels), run.ids_in_order, run.records)
    journal.discard()
    report.seconds = time.monotonic() - started
    return report


class _Run:
    """The bookkeeping of one run: order of ids, records, counts."""

    def __init__(
        self,
        journal: Journal,
        class_labels: list[str],
        records: dict[str, list[str]],
        report: PredictReport,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self.journal = journal
        self.class_labels = class_labels
        self.records = records
        self.report = report
        self.on_progress = on_progress or (lambda rows: None)
        self.ids_in_order: list[str] = []

    def rows_to_send(self, input_path: Path, rows: Iterator[Row]) -> Iterator[Row]:
        """Yield the rows without a prediction yet; note every id's place."""
        seen: set[str] = set()
        for row in rows:
            if row.id in seen:
                raise InputError(
                    f"{input_path}: id {row.id!r} appears twice; ids must be "
                    f"unique (drtool load makes them so)."
                )
            seen.add(row.id)
            self.ids_in_order.append(row.id)
            self.report.rows += 1
            if row.id in self.records:
                self.report.succeeded += 1
                self.on_progress(1)
            else:
                yield row

    def record(self, results: list[RowResult]) -> None:
        """Keep the results of one request, in the journal and in memory."""
        results = [self._checked(r) for r in results]
        self.journal.record(results)
        for result in results:
            self.records[result.id] = to_record(result, self.class_labels)
            if result.ok:
                self.report.succeeded += 1
            else:
                self.report.failed += 1
                if len(self.report.failures) < REPORTED_FAILURES:
                    self.report.failures.append(
                        {"id": result.id, "error": result.error}
                    )
        self.report.requests += 1
        self.on_progress(len(results))

    def _checked(self, result: RowResult) -> RowResult:
        if result.ok and result.label not in self.class_labels:
            return RowResult(
                id=result.id,
                error=(
                    f"the model answered label {result.label!r}, which is not in "
                    f"model.class_labels {self.class_labels} of config.yaml"
                ),
            )
        return result


def _send_all(
    chunks: Iterator, sender: Sender, concurrency: int, record: Callable
) -> None:
    """Send ``chunks`` with at most ``concurrency`` requests in flight."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="predict")
    pending: set[Future[list[RowResult]]] = set()
    try:
        for chunk in chunks:
            pending.add(pool.submit(sender.send, chunk))
            # Read ahead a little so a thread never waits for the next body,
            # but no further: memory stays bounded by a few requests.
            if len(pending) >= 2 * concurrency:
                pending = _collect(pending, record)
        while pending:
            pending = _collect(pending, record)
    finally:
        # On an error or Ctrl-C, don't wait for requests still in flight:
        # they are lost, and resent by the next run.
        pool.shutdown(wait=False, cancel_futures=True)


def _collect(
    pending: set[Future[list[RowResult]]], record: Callable[[list[RowResult]], None]
) -> set[Future[list[RowResult]]]:
    """Wait for at least one request; record every finished one, then raise.

    Several requests can finish together. The successful ones are recorded
    before a failed one's error propagates, so no finished row is lost.
    """
    done, still_pending = wait(pending, return_when=FIRST_COMPLETED)
    failed = [future for future in done if future.exception() is not None]
    for future in done:
        if future not in failed:
            record(future.result())
    if failed:
        error = failed[0].exception()
        assert error is not None
        raise error
    return still_pending


def predict_locally(
    model_dir: Path,
    input_path: Path,
    output_path: Path,
    class_labels: list[str],
    options: SendOptions,
    *,
    address: str = "",
    workers: int = 2,
    start_timeout: float = 180.0,
    on_progress: Callable[[int], None] | None = None,
) -> PredictReport:
    """Predict on a local DRUM server: the one at ``address``, or one started here.

    A server started here is stopped when the run ends, however it ends.
    """
    check_paths(input_path, output_path)
    if address:
        target = local_target(address)
        return predict_file(
            input_path, output_path, target, class_labels, options, on_progress
        )
    with DrumServer(model_dir, workers=workers, start_timeout=start_timeout) as server:
        target = local_target(server.url)
        return predict_file(
            input_path, output_path, target, class_labels, options, on_progress
        )


def check_paths(input_path: Path, output_path: Path) -> None:
    """Refuse at once, before any server starts, paths that cannot work."""
    if not input_path.is_file():
        raise InputError(
            f"{input_path} does not exist; make it with `drtool load`, or pass --input."
        )
    if output_path.resolve() == input_path.resolve():
        raise InputError(
            f"--output {output_path} is the input file; the predictions would "
            f"overwrite it. Choose another output."
        )
    if not output_path.parent.is_dir():
        raise InputError(
            f"the folder of --output {output_path} does not exist; create it first."
        )


def count_rows(path: Path) -> int:
    """Count the data rows of a CSV quickly, by its line ends (for progress bars).

    Exact for files made by `drtool load`, whose cells hold no line breaks.
    """
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(lines - 1, 0)
