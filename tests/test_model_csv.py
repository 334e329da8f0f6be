"""The model's CSV reading: the fast split and the csv module agree."""

from __future__ import annotations

import pytest

from tests import imaging

imaging.use_model_code()

from utils.scoring import RequestError, read_rows  # noqa: E402

HEADER = "id,img,x1,y1,x2,y2"


@pytest.mark.parametrize(
    "body",
    [
        f"{HEADER}\na,QUJD,0,0,4,4\nb,REVG,1,1,3,3\n",
        f"{HEADER}\r\na,QUJD,0,0,4,4\r\nb,REVG,1,1,3,3\r\n",  # CRLF
        f"{HEADER}\na,QUJD,0,0,4,4\n\nb,REVG,1,1,3,3",  # blank line, no final end
        f"{HEADER},extra\na,QUJD,0,0,4,4,x\n",  # an extra column
        f"{HEADER}\na,QUJD,0,0,4,4,surplus\nb,REVG,1\n",  # cells not lining up
        f"\ufeff{HEADER}\na,QUJD,0,0,4,4\n",  # BOM
    ],
)
def test_the_fast_split_reads_what_the_csv_module_reads(body):
    fast = read_rows(body)
    # The same body with one quoted cell goes through the csv module.
    quoted = read_rows(body.replace("QUJD", '"QUJD"', 1))

    assert [(r.number, r.id, r.cells) for r in fast] == [
        (r.number, r.id, r.cells) for r in quoted
    ]


def test_a_quoted_body_with_commas_inside_cells_is_read_by_the_csv_module():
    (row,) = read_rows(f'{HEADER}\n"a,1",QUJD,0,0,4,4\n')
    assert row.id == "a,1"


def test_broken_quoting_is_refused_as_a_whole():
    with pytest.raises(RequestError, match="not valid CSV"):
        read_rows(f'{HEADER}\n"a,QUJD,0,0,4,4\n')
