"""drtool.dataset: data.txt and images to the three CSVs, or a list of bad lines."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import os
import struct
import sys
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from drtool.dataset import (
    ACTUALS_FILE,
    MERGED_FILE,
    PREPARED_FILE,
    LoadReport,
    load_dataset,
)
from drtool.errors import InputError

BINARY = {0: "0", 1: "0", 2: "1"}
THREE_CLASSES = {0: "0", 1: "1", 2: "2"}
OUTPUTS = (PREPARED_FILE, ACTUALS_FILE, MERGED_FILE)
FIELD_COUNT = "expected 6 fields, `image class x1 y1 x2 y2` (or 5 without the class)"
# Every test image is this size, so boxes just inside or outside are known.
WIDTH, HEIGHT = 32, 24


# --- building data sets -------------------------------------------------------


def save_image(
    path: Path, fmt: str = "PNG", size: tuple[int, int] = (WIDTH, HEIGHT)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = bytes(
        (x * 7 + y * 3) % 256 for y in range(size[1]) for x in range(size[0])
    )
    Image.frombytes("L", size, pixels).convert("RGB" if fmt == "JPEG" else "L").save(
        path, fmt
    )
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A folder with images/a.png, images/b.png and images/c.jpg; no data.txt."""
    folder = tmp_path / "ds"
    save_image(folder / "images" / "a.png")
    # b differs from a: a different id prefix.
    Image.new("L", (WIDTH, HEIGHT), 9).save(folder / "images" / "b.png")
    save_image(folder / "images" / "c.jpg", "JPEG")
    return folder


def write_data(folder: Path, *lines: str) -> Path:
    (folder / "data.txt").write_text("".join(f"{line}\n" for line in lines))
    return folder


def load(folder: Path, **options) -> LoadReport:
    options.setdefault("label_map", BINARY)
    return load_dataset(folder, folder / "images", **options)


def bad_lines(folder: Path, **options) -> str:
    """Load, expecting InputError; check nothing was written; return the message."""
    with pytest.raises(InputError) as caught:
        load(folder, **options)
    assert_nothing_written(options.get("out_dir", folder))
    return str(caught.value)


def assert_nothing_written(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert [name for name in OUTPUTS if (folder / name).exists()] == []


@contextlib.contextmanager
def large_csv_fields() -> Iterator[None]:
    # A 512x512 slice in base64 is over csv's default field limit of 128 KiB.
    old = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def rows(path: Path) -> list[dict[str, str]]:
    with large_csv_fields(), path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- one test per kind of bad line -------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a.png 0 0 0", f"{FIELD_COUNT}, found 4"),
        ("a.png 0 0 0 8 8 9", f"{FIELD_COUNT}, found 7"),
        ("a.png 0 1.5 0 8 8", "x1 '1.5' is not a whole number"),
        ("a.png 0 0 0 8 +8", "y2 '+8' is not a whole number"),
        ("a.png covid 0 0 8 8", "class 'covid' is not a whole number"),
        (
            "a.png 7 0 0 8 8",
            "unknown class 7 (data.label_map in config.yaml has 0, 1, 2)",
        ),
        ("a.png 0 8 0 8 8", "box is empty: x2=8 is not greater than x1=8"),
        ("a.png 0 0 9 8 3", "box is empty: y2=3 is not greater than y1=9"),
        ("a.png 0 -1 0 8 8", "box x1=-1 is outside the image (negative)"),
        ("a.png 0 0 0 33 8", "box x2=33 is outside the image (width 32)"),
        ("a.png 0 0 0 8 25", "box y2=25 is outside the image (height 24)"),
        ("c.jpg 0 0 0 40 8", "box x2=40 is outside the image (width 32)"),
        ("nope.png 0 0 0 8 8", "image nope.png not found in"),
    ],
)
def test_bad_line_is_reported_with_its_number(
    dataset: Path, line: str, reason: str
) -> None:
    write_data(dataset, "a.png 0 0 0 8 8", line)
    message = bad_lines(dataset)
    assert f"data.txt line 2: {reason}" in message
    assert "line 1:" not in message


def test_box_touching_the_edges_is_fine(dataset: Path) -> None:
    # The maximum is exclusive: x2 = width and y2 = height cover the last pixel.
    write_data(dataset, f"a.png 0 0 0 {WIDTH} {HEIGHT}")
    assert load(dataset).rows == 1


def test_not_an_image(dataset: Path) -> None:
    (dataset / "images" / "notes.png").write_text("not an image")
    write_data(dataset, "notes.png 0 0 0 8 8")
    assert "data.txt line 1: image notes.png is not a PNG or JPEG image" in bad_lines(
        dataset
    )


def test_format_the_model_cannot_read(dataset: Path) -> None:
    save_image(dataset / "images" / "d.gif", "GIF")
    write_data(dataset, "d.gif 0 0 0 8 8")
    assert "line 1: image d.gif is not a PNG or JPEG image" in bad_lines(dataset)


@pytest.mark.parametrize("kept", [40, -30], ids=["in the header", "in the data"])
def test_truncated_png(dataset: Path, kept: int) -> None:
    whole = (dataset / "images" / "a.png").read_bytes()
    (dataset / "images" / "cut.png").write_bytes(whole[:kept])
    write_data(dataset, "cut.png 0 0 0 8 8")
    assert "line 1: image cut.png is broken or truncated" in bad_lines(dataset)


def test_truncated_jpeg_header(dataset: Path) -> None:
    whole = (dataset / "images" / "c.jpg").read_bytes()
    (dataset / "images" / "cut.jpg").write_bytes(whole[:100])
    write_data(dataset, "cut.jpg 0 0 0 8 8")
    assert "line 1: image cut.jpg is broken or truncated" in bad_lines(dataset)


def test_corrupt_png(dataset: Path) -> None:
    damaged = bytearray((dataset / "images" / "a.png").read_bytes())
    damaged[-20] ^= 0xFF  # inside the last IDAT: its CRC no longer matches
    (dataset / "images" / "bad.png").write_bytes(bytes(damaged))
    write_data(dataset, "bad.png 0 0 0 8 8")
    assert "line 1: image bad.png is broken or truncated" in bad_lines(dataset)


def test_truncated_jpeg(dataset: Path) -> None:
    whole = (dataset / "images" / "c.jpg").read_bytes()
    (dataset / "images" / "cut.jpg").write_bytes(whole[:-40])
    write_data(dataset, "cut.jpg 0 0 0 8 8")
    message = bad_lines(dataset)
    assert "line 1: image cut.jpg is a truncated JPEG (no end-of-image marker)" in (
        message
    )


def test_image_that_is_a_folder(dataset: Path) -> None:
    (dataset / "images" / "folder.png").mkdir()
    write_data(dataset, "folder.png 0 0 0 8 8")
    assert "line 1: image folder.png is not a regular file" in bad_lines(dataset)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_waiting_for_a_writer(dataset: Path) -> None:
    os.mkfifo(dataset / "images" / "pipe.png")
    write_data(dataset, "pipe.png 0 0 0 8 8")
    assert "line 1: image pipe.png is not a regular file" in bad_lines(dataset)


def test_too_many_pixels_is_refused_from_the_header(dataset: Path) -> None:
    # The file holds no pixel data: only the header was read to refuse it.
    (dataset / "images" / "huge.png").write_bytes(png_header_only(10_000, 10_000))
    write_data(dataset, "huge.png 0 0 0 8 8")
    assert (
        "line 1: image huge.png is 10000x10000 = 100,000,000 pixels, too large to "
        "decode safely (data.max_image_pixels: 50,000,000)"
    ) in bad_lines(dataset)


def test_max_image_pixels_comes_from_the_caller(dataset: Path) -> None:
    write_data(dataset, "a.png 0 0 0 8 8")
    message = bad_lines(dataset, max_image_pixels=WIDTH * HEIGHT - 1)
    assert "line 1: image a.png is 32x24 = 768 pixels, too large" in message


def test_pil_decompression_bomb_error_is_a_bad_line(dataset: Path) -> None:
    # Over twice PIL's own limit, Image.open raises before drtool sees a size.
    (dataset / "images" / "bomb.png").write_bytes(png_header_only(40_000, 40_000))
    write_data(dataset, "bomb.png 0 0 0 8 8")
    message = bad_lines(dataset, max_image_pixels=10**12)
    assert "line 1: image bomb.png is too large to decode safely" in message


def test_absolute_image_name(dataset: Path) -> None:
    absolute = dataset / "images" / "a.png"
    write_data(dataset, f"{absolute} 0 0 0 8 8")
    assert f"line 1: image name {absolute} is an absolute path" in bad_lines(dataset)


def test_dot_dot_image_name(dataset: Path) -> None:
    save_image(dataset / "outside.png")
    write_data(dataset, "../outside.png 0 0 0 8 8")
    message = bad_lines(dataset)
    assert "line 1: image name ../outside.png points outside the image folder" in (
        message
    )


def test_symlink_out_of_the_image_folder(dataset: Path) -> None:
    outside = save_image(dataset / "outside.png")
    (dataset / "images" / "link.png").symlink_to(outside)
    write_data(dataset, "link.png 0 0 0 8 8")
    message = bad_lines(dataset)
    assert f"line 1: image link.png leads to {outside} through a symlink" in message


def test_symlink_within_the_image_folder_is_fine(dataset: Path) -> None:
    (dataset / "images" / "sub").mkdir()
    (dataset / "images" / "sub" / "alias.png").symlink_to("../a.png")
    write_data(dataset, "sub/alias.png 0 0 0 8 8")
    assert load(dataset).rows == 1


# --- the whole file -----------------------------------------------------------


def test_all_bad_lines_are_reported_at_once(dataset: Path) -> None:
    write_data(
        dataset,
        "a.png 0 0 0 8 8",
        "a.png 0 0 0 600 8",
        "b.png 2 0 0 8 8",
        "gone.png 0 0 0 8 8",
        "a.png 9 0 0 8 8",
    )
    message = bad_lines(dataset)
    assert message.startswith(f"{dataset / 'data.txt'} has 3 bad lines;")
    assert "data.txt line 2: box x2=600 is outside the image (width 32)" in message
    assert "data.txt line 4: image gone.png not found in" in message
    assert "data.txt line 5: unknown class 9" in message
    assert "line 1:" not in message and "line 3:" not in message


def test_a_long_list_of_bad_lines_is_cut(dataset: Path) -> None:
    write_data(dataset, *["a.png 0 0 0 99 8"] * 60)
    message = bad_lines(dataset)
    assert "has 60 bad lines" in message
    assert "data.txt line 50:" in message and "data.txt line 51:" not in message
    assert message.endswith("and 10 more")


def test_existing_outputs_are_untouched_on_failure(dataset: Path) -> None:
    for name in OUTPUTS:
        (dataset / name).write_text(f"earlier {name}")
    write_data(dataset, "a.png 0 0 0 8 8", "a.png 0 0 0 80 8")
    with pytest.raises(InputError, match="data.txt line 2"):
        load(dataset)
    for name in OUTPUTS:
        assert (dataset / name).read_text() == f"earlier {name}"
    assert [p for p in dataset.iterdir() if p.name.endswith(".tmp")] == []


def test_crlf_bom_and_blank_lines(dataset: Path) -> None:
    text = "\ufeffa.png 2 0 0 8 8\r\n\r\n  \r\nb.png 0 0 0 8 8\r\n"
    (dataset / "data.txt").write_bytes(text.encode("utf-8"))
    report = load(dataset)
    assert report.rows == 2
    assert [row["actual"] for row in rows(dataset / MERGED_FILE)] == ["1", "0"]


def test_blank_lines_count_in_line_numbers(dataset: Path) -> None:
    (dataset / "data.txt").write_text("a.png 0 0 0 8 8\n\n\na.png 0 0\n")
    assert "data.txt line 4: expected 6 fields" in bad_lines(dataset)


@pytest.mark.parametrize("text", ["", "\n\n  \n", "\ufeff\r\n"])
def test_no_data_lines_is_an_error(dataset: Path, text: str) -> None:
    (dataset / "data.txt").write_text(text, encoding="utf-8")
    assert "has no data lines" in bad_lines(dataset)


def test_missing_data_txt(dataset: Path) -> None:
    with pytest.raises(InputError, match=r"data\.txt does not exist"):
        load(dataset)


def test_missing_image_folder(dataset: Path) -> None:
    write_data(dataset, "a.png 0 0 0 8 8")
    with pytest.raises(InputError, match="the image folder .* does not exist"):
        load_dataset(dataset, dataset / "pictures", label_map=BINARY)


def test_data_txt_that_is_not_utf8(dataset: Path) -> None:
    (dataset / "data.txt").write_bytes(b"a.png 0 0 0 8 8\n\xff\xfe.png 0 0 0 8 8\n")
    assert "is not UTF-8 text" in bad_lines(dataset)


# --- what is written ----------------------------------------------------------


def test_three_files_one_row_per_line(dataset: Path) -> None:
    write_data(dataset, "a.png 2 1 2 30 20", "b.png 16 0 32 24", "c.jpg 0 0 0 8 8")
    report = load(dataset)

    prepared = rows(dataset / PREPARED_FILE)
    merged = rows(dataset / MERGED_FILE)
    actuals = rows(dataset / ACTUALS_FILE)
    assert list(prepared[0]) == ["id", "img", "x1", "y1", "x2", "y2"]
    assert list(merged[0]) == ["id", "img", "x1", "y1", "x2", "y2", "actual"]
    assert [r["id"] for r in prepared] == [r["id"] for r in merged]
    assert [(r["x1"], r["y1"], r["x2"], r["y2"]) for r in prepared] == [
        ("1", "2", "30", "20"),
        ("16", "0", "32", "24"),
        ("0", "0", "8", "8"),
    ]
    assert [r["actual"] for r in merged] == ["1", "", "0"]
    assert actuals == [
        {"id": merged[0]["id"], "actual": "1"},
        {"id": merged[2]["id"], "actual": "0"},
    ]
    assert (report.rows, report.rows_with_actual, report.rows_without_actual) == (
        3,
        2,
        1,
    )
    assert report.label_counts == {"0": 1, "1": 1}
    assert report.prepared == dataset / PREPARED_FILE


def test_img_is_plain_base64_of_the_file(dataset: Path) -> None:
    write_data(dataset, "a.png 0 0 0 8 8", "c.jpg 0 0 0 8 8")
    load(dataset)
    for row, name in zip(
        rows(dataset / PREPARED_FILE), ["a.png", "c.jpg"], strict=True
    ):
        assert not row["img"].startswith("b'")
        decoded = base64.b64decode(row["img"], validate=True)
        assert decoded == (dataset / "images" / name).read_bytes()


def test_id_rule_and_duplicates(dataset: Path) -> None:
    write_data(dataset, "a.png 0 0 0 8 8", "b.png 0 0 0 8 8", "a.png 2 0 0 9 9")
    load(dataset)
    ids = [r["id"] for r in rows(dataset / MERGED_FILE)]
    a_prefix = hashlib.sha256((dataset / "images" / "a.png").read_bytes()).hexdigest()
    assert ids[0] == f"{a_prefix[:20]}-1"
    assert ids[2] == f"{a_prefix[:20]}-2"
    assert ids[1].endswith("-1") and ids[1] != ids[0]


def test_same_content_under_another_name_counts_as_the_same_image(
    dataset: Path,
) -> None:
    copy = dataset / "images" / "copy.png"
    copy.write_bytes((dataset / "images" / "a.png").read_bytes())
    write_data(dataset, "a.png 0 0 0 8 8", "copy.png 0 0 0 8 8")
    load(dataset)
    first, second = (r["id"] for r in rows(dataset / MERGED_FILE))
    assert first.endswith("-1") and second == first[:-2] + "-2"


def test_ids_and_files_are_stable_across_runs(dataset: Path, tmp_path: Path) -> None:
    write_data(dataset, "a.png 0 0 0 8 8", "a.png 2 0 0 8 8", "c.jpg 1 0 0 8 8")
    load(dataset, out_dir=tmp_path / "first")
    load(dataset, out_dir=tmp_path / "second")
    for name in OUTPUTS:
        assert (tmp_path / "first" / name).read_bytes() == (
            tmp_path / "second" / name
        ).read_bytes()


def test_out_dir_receives_the_files(dataset: Path, tmp_path: Path) -> None:
    write_data(dataset, "a.png 0 0 0 8 8")
    report = load(dataset, out_dir=tmp_path / "new" / "out")
    assert report.merged == tmp_path / "new" / "out" / MERGED_FILE
    assert report.merged.is_file()
    assert_nothing_written(dataset)


def test_five_field_lines_have_no_actual(dataset: Path) -> None:
    write_data(dataset, "a.png 0 0 8 8", "b.png 0 0 8 8")
    report = load(dataset)
    assert (report.rows_with_actual, report.rows_without_actual) == (0, 2)
    assert report.label_counts == {}
    assert [r["actual"] for r in rows(dataset / MERGED_FILE)] == ["", ""]
    assert (dataset / ACTUALS_FILE).read_text() == "id,actual\n"


@pytest.mark.parametrize(
    ("label_map", "expected"),
    [(BINARY, ["0", "0", "1"]), (THREE_CLASSES, ["0", "1", "2"])],
)
def test_label_map(
    dataset: Path, label_map: dict[int, str], expected: list[str]
) -> None:
    write_data(dataset, "a.png 0 0 0 8 8", "a.png 1 0 0 8 8", "a.png 2 0 0 8 8")
    report = load(dataset, label_map=label_map)
    assert [r["actual"] for r in rows(dataset / ACTUALS_FILE)] == expected
    assert [r["actual"] for r in rows(dataset / MERGED_FILE)] == expected
    assert sum(report.label_counts.values()) == 3


def test_labels_that_need_quoting(dataset: Path) -> None:
    label_map = {0: "normal, or pneumonia", 2: 'covid "19"'}
    write_data(dataset, "a.png 0 0 0 8 8", "a.png 2 0 0 8 8", "a.png 0 0 8 8")
    load(dataset, label_map=label_map)
    actuals = [r["actual"] for r in rows(dataset / MERGED_FILE)]
    assert actuals == ["normal, or pneumonia", 'covid "19"', ""]


# --- the real slices ----------------------------------------------------------


@pytest.mark.shared_data
def test_real_covidx_slices(shared_ct: Path, tmp_path: Path) -> None:
    folder = shared_ct / "covidx"
    report = load_dataset(folder, folder, label_map=BINARY, out_dir=tmp_path)
    assert_real_load(report, folder, tmp_path)
    assert report.rows_without_actual == 0
    assert report.label_counts == {"0": 1, "1": 1}


@pytest.mark.shared_data
def test_real_volume_slices(shared_ct: Path, tmp_path: Path) -> None:
    folder = shared_ct / "volume"
    report = load_dataset(folder, folder / "images", label_map=BINARY, out_dir=tmp_path)
    assert_real_load(report, folder, tmp_path)
    assert report.rows_with_actual == 0
    assert rows(tmp_path / ACTUALS_FILE) == []


def assert_real_load(report: LoadReport, folder: Path, out: Path) -> None:
    lines = [line for line in (folder / "data.txt").read_text().splitlines() if line]
    merged = rows(out / MERGED_FILE)
    assert report.rows == len(merged) == len(lines)
    assert len({row["id"] for row in merged}) == len(merged)
    assert [row["x1"] for row in merged] == [line.split()[-4] for line in lines]


# --- streaming ----------------------------------------------------------------


def peak_bytes_of_loading(folder: Path, lines: int) -> int:
    write_data(folder, *["a.png 2 0 0 8 8"] * lines)
    tracemalloc.start()
    try:
        load(folder)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_lines(dataset: Path) -> None:
    small = peak_bytes_of_loading(dataset, 1_000)
    large = peak_bytes_of_loading(dataset, 4_000)
    # Holding as little as 40 bytes a line would add 120 KB here.
    assert large - small < 64 * 1024, (small, large)
