"""Streaming the prepared rows into request bodies."""

from __future__ import annotations

import csv
import io

import pytest

from drtool.errors import InputError
from drtool.predict.chunks import chunk_rows, read_rows
from tests.fake_model import write_prepared


def parse(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"))))


def test_rows_are_grouped_by_count_and_keep_the_header(tmp_path):
    ids = write_prepared(tmp_path / "in.csv", 7)
    header, rows = read_rows(tmp_path / "in.csv")
    chunks = list(chunk_rows(header, rows, max_rows=3, max_bytes=10_000))

    assert [len(c.ids) for c in chunks] == [3, 3, 1]
    assert [i for c in chunks for i in c.ids] == ids
    for chunk in chunks:
        records = parse(chunk.body)
        assert records[0] == ["id", "img", "x1", "y1", "x2", "y2"]
        assert [r[0] for r in records[1:]] == chunk.ids


def test_a_request_never_exceeds_the_byte_limit(tmp_path):
    write_prepared(tmp_path / "in.csv", 20, image="A" * 100)
    header, rows = read_rows(tmp_path / "in.csv")
    chunks = list(chunk_rows(header, rows, max_rows=100, max_bytes=600))

    assert len(chunks) > 1
    assert all(len(c.body) <= 600 for c in chunks)
    assert sum(len(c.ids) for c in chunks) == 20


def test_a_row_over_the_limit_alone_is_singled_out_by_id(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(
        "id,img,x1,y1,x2,y2\nsmall,QQ==,0,0,1,1\nhuge," + "A" * 5000 + ",0,0,1,1\n"
    )
    header, rows = read_rows(path)
    chunks = list(chunk_rows(header, rows, max_rows=10, max_bytes=1000))

    oversized = [c for c in chunks if c.oversized]
    assert [c.ids for c in oversized] == [["huge"]]
    assert [c.ids for c in chunks if not c.oversized] == [["small"]]


def test_cells_larger_than_the_csv_module_default_are_read(tmp_path):
    big = "A" * 400_000  # a base64 CT slice is a few hundred kB
    path = tmp_path / "in.csv"
    path.write_text(f"id,img,x1,y1,x2,y2\nr1,{big},0,0,1,1\n")
    header, rows = read_rows(path)
    (row,) = list(rows)
    assert row.id == "r1" and len(row.line) > 400_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("id,x1\nr1,3\n", "missing column 'img'"),
        ("name,img\nr1,QQ==\n", "missing column 'id'"),
    ],
)
def test_a_wrong_input_file_is_refused_before_sending(tmp_path, content, message):
    path = tmp_path / "in.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_rows(path)


def test_a_missing_input_file_says_how_to_make_it(tmp_path):
    with pytest.raises(InputError, match="drtool load"):
        read_rows(tmp_path / "absent.csv")


def test_a_row_without_id_names_its_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,img\nr1,QQ==\n,QQ==\n")
    header, rows = read_rows(path)
    with pytest.raises(InputError, match="line 3: the row has no id"):
        list(rows)
