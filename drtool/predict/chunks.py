"""Stream prepared_data.csv into request bodies, bounded by rows and by bytes.

Nothing here holds more than one request's rows: the input can be larger than
memory.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from drtool.errors import InputError

REQUIRED_COLUMNS = ("id", "img")

# A base64 CT slice is a few hundred kB: far over the csv module's default
# field limit of 128 kB.
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Row:
    """One input row: its id and its line of CSV, ready to send."""

    id: str
    line: bytes


@dataclass(frozen=True)
class Chunk:
    """The rows of one request, or one row too large to send at all."""

    ids: list[str]
    body: bytes
    oversized: bool = False


def read_rows(path: Path, id_column: str = "id") -> tuple[list[str], Iterator[Row]]:
    """Open ``path`` and return its header and an iterator over its rows.

    The header is checked at once, so a wrong file fails before any request.
    """
    handle = _open_csv(path)
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        handle.close()
        raise InputError(f"{path} is empty; make it with `drtool load`.")
    missing = [c for c in (id_column, *REQUIRED_COLUMNS[1:]) if c not in header]
    if missing:
        handle.close()
        raise InputError(
            f"{path}: missing column {missing[0]!r} in the header {header}; "
            f"make the file with `drtool load`."
        )
    return header, _iter_rows(path, handle, reader, header.index(id_column))


def _open_csv(path: Path) -> io.TextIOWrapper:
    try:
        return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except FileNotFoundError:
        raise InputError(
            f"{path} does not exist; make it with `drtool load`, or pass --input."
        ) from None


def _iter_rows(
    path: Path, handle: io.TextIOWrapper, reader: Iterable[list[str]], id_index: int
) -> Iterator[Row]:
    with handle:
        for line_number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) <= id_index or not fields[id_index]:
                raise InputError(f"{path} line {line_number}: the row has no id.")
            yield Row(id=fields[id_index], line=_to_csv([fields]))


def chunk_rows(
    header: list[str], rows: Iterable[Row], *, max_rows: int, max_bytes: int
) -> Iterator[Chunk]:
    """Group ``rows`` into CSV request bodies of at most max_rows and max_bytes.

    A row that alone exceeds ``max_bytes`` comes back as an oversized chunk, so
    the caller can fail that row by name and go on with the others.
    """
    header_line = _to_csv([header])
    batch: list[Row] = []
    batch_size = len(header_line)
    for row in rows:
        if len(header_line) + len(row.line) > max_bytes:
            yield Chunk(ids=[row.id], body=b"", oversized=True)
            continue
        full = len(batch) >= max_rows or batch_size + len(row.line) > max_bytes
        if batch and full:
            yield _make_chunk(header_line, batch)
            batch, batch_size = [], len(header_line)
        batch.append(row)
        batch_size += len(row.line)
    if batch:
        yield _make_chunk(header_line, batch)


def _make_chunk(header_line: bytes, rows: list[Row]) -> Chunk:
    body = b"".join([header_line, *(r.line for r in rows)])
    return Chunk(ids=[r.id for r in rows], body=body)


def _to_csv(records: Iterable[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(records)
    return buffer.getvalue().encode("utf-8")
