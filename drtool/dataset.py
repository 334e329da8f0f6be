"""Turn data.txt and its images into the prediction input and the actuals.

``load_dataset`` reads ``data.txt``, one slice per line in the COVIDx CT label
format, ``{image file} {class} {x1} {y1} {x2} {y2}`` (classes 0 normal,
1 pneumonia, 2 COVID-19; the box in pixels, its maximum exclusive). A line of
five fields, ``{image file} {x1} {y1} {x2} {y2}``, is a slice to predict that
has no actual. It writes three CSVs:

- ``prepared_data.csv``: ``id,img,x1,y1,x2,y2``, ``img`` being the image
  file's bytes in plain base64: the prediction input.
- ``actuals.csv``: ``id,actual`` for the lines with a class, the class mapped
  to a model label by ``data.label_map``.
- ``merged_file.csv``: ``id,img,x1,y1,x2,y2,actual``, one row per line
  (``actual`` empty where the line has no class).

The id
------
The association id that later matches actuals to predictions is::

    {first 20 hex digits of the SHA-256 of the image file's bytes}-{N}

where N counts the lines of this data.txt so far whose image has those same
20 digits (1 for the first). So it is unique per row even when one image is
listed twice, the same on every run and machine, independent of file names
and folders, and 22 to 30 characters long (DataRobot allows 128). N counts by
the 20 digits, not the full digest, so that ids stay unique even in the
(2**-80) case of two different images sharing them.

Checks
------
Every line is checked, and every bad line is reported at once, in one
``InputError``: the field count, whole numbers, a known class, a non-empty box
inside the image, an image name that stays inside the image folder (no
absolute path, no ``..``, no symlink out of it), and an image that exists, is
a PNG or a JPEG (what the model accepts), is not too large to decode safely,
and is whole. Nothing is written then.

How an image is checked, and what it costs (the real 512x512 CT slices, per
image, measured): opening the header gives the format and size (10 us for a
PNG, 17 us for a JPEG); images over ``max_image_pixels`` are refused there,
before any decoding. A PNG is then verified with ``Image.verify``, which
checks the CRC of every chunk through IEND (60 us in all): that catches
truncation and corruption. PIL's verify does nothing for a JPEG, and only a
full decode would check its entropy-coded data (1.7 to 1.9 ms, more than all
the rest of the work on a line, about 1 ms), so a JPEG must end with its
end-of-image marker: that catches truncation, not damage inside the data,
which the model's own decoding reports at prediction time.

Memory
------
One pass, one line at a time: each line's row is written to temporary files
at once, and the three are renamed into place together only when every line
passed (``drtool.atomic.AtomicFiles``). What is held grows with the number of
distinct images (a counter per id prefix), never with the number of lines,
and no image bytes are kept past their line.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import logging
import os
import re
import stat
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image, UnidentifiedImageError

from drtool.atomic import AtomicFiles
from drtool.errors import ConfigError, InputError
from drtool.settings import DataSettings

log = logging.getLogger(__name__)

DATA_FILE = "data.txt"
PREPARED_FILE = "prepared_data.csv"
ACTUALS_FILE = "actuals.csv"
MERGED_FILE = "merged_file.csv"
_OUTPUT_FILES = (PREPARED_FILE, ACTUALS_FILE, MERGED_FILE)

PREPARED_HEADER = ("id", "img", "x1", "y1", "x2", "y2")
ACTUALS_HEADER = ("id", "actual")
MERGED_HEADER = (*PREPARED_HEADER, "actual")

ID_HASH_DIGITS = 20
# Bad lines listed in the error; the others are only counted.
MAX_LISTED_PROBLEMS = 50
# The model decodes only these (model/utils/preprocessing.py); refusing the
# rest here also keeps PIL's rarer decoders away from untrusted files.
ACCEPTED_FORMATS = ("PNG", "JPEG")

_BOX_NAMES = ("x1", "y1", "x2", "y2")
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
_JPEG_END = b"\xff\xd9"
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
# Bytes some writers pad a JPEG with after its end-of-image marker.
_JPEG_TRAILER_SLACK = 32
# What PIL raises, depending on the format, on bytes that are not a whole image.
_BROKEN_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)
# Non-blocking: a FIFO named in data.txt must not hang the load. No-follow:
# a symlink swapped in after the folder check is refused, not followed.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
_WRITE_BUFFER = 1 << 20


@dataclass(frozen=True)
class LoadReport:
    """What ``load_dataset`` read and wrote."""

    data_file: Path
    rows: int
    rows_with_actual: int
    rows_without_actual: int
    # Model label -> rows whose actual is that label, in label order.
    label_counts: dict[str, int]
    prepared: Path
    actuals: Path
    merged: Path

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return {
            "data_file": str(self.data_file),
            "rows": self.rows,
            "rows_with_actual": self.rows_with_actual,
            "rows_without_actual": self.rows_without_actual,
            "label_counts": dict(self.label_counts),
            "outputs": {
                "prepared": str(self.prepared),
                "actuals": str(self.actuals),
                "merged": str(self.merged),
            },
        }


class BadLine(Exception):
    """One line of data.txt is wrong; the message says how."""


@dataclass(frozen=True)
class DataLine:
    """One parsed line of data.txt."""

    image_name: str
    # None: a five-field line, a slice without an actual.
    data_class: int | None
    box: tuple[int, int, int, int]


def load_dataset(
    dataset_dir: Path,
    images_dir: Path,
    *,
    label_map: Mapping[int, str],
    max_image_pixels: int = DataSettings.max_image_pixels,
    out_dir: Path | None = None,
) -> LoadReport:
    """Check every line of ``dataset_dir``/data.txt and write the three CSVs.

    The CSVs go to ``out_dir`` (default: ``dataset_dir``), all three or none.
    Raises ``InputError`` listing every bad line, having written nothing.
    """
    data_file = dataset_dir / DATA_FILE
    out_dir = dataset_dir if out_dir is None else out_dir
    _check_image_folder(images_dir)
    handle = _open_data_file(data_file)

    with handle, AtomicFiles() as files, _without_pil_size_warnings():
        _make_folder(out_dir)
        outputs = _Outputs(files, out_dir)
        one_pass = _Pass(images_dir, label_map, max_image_pixels, outputs)
        for number, text in _numbered_lines(handle, data_file):
            one_pass.take(number, text)
        # Raised inside the block, so the temporary files are discarded.
        _check_tally(one_pass.tally, data_file)

    log.debug("Wrote %s, %s and %s in %s", *_OUTPUT_FILES, out_dir)
    return _report(one_pass.tally, data_file, out_dir)


def id_prefix(data: bytes) -> str:
    """Return the part of an association id that the image's bytes decide."""
    return hashlib.sha256(data).hexdigest()[:ID_HASH_DIGITS]


def parse_line(text: str, label_map: Mapping[int, str]) -> DataLine:
    """Parse one non-blank line of data.txt; raise ``BadLine`` saying why not."""
    fields = text.split()
    if len(fields) not in (5, 6):
        raise BadLine(
            f"expected 6 fields, `image class x1 y1 x2 y2` (or 5 without the "
            f"class), found {len(fields)}"
        )
    name, *numbers = fields
    names = ("class", *_BOX_NAMES) if len(numbers) == 5 else _BOX_NAMES
    values = [_whole_number(n, v) for n, v in zip(names, numbers, strict=True)]

    data_class = values.pop(0) if len(values) == 5 else None
    if data_class is not None and data_class not in label_map:
        known = ", ".join(str(c) for c in sorted(label_map))
        raise BadLine(
            f"unknown class {data_class} (data.label_map in config.yaml has {known})"
        )
    x1, y1, x2, y2 = values
    _check_box_shape((x1, y1, x2, y2))
    return DataLine(name, data_class, (x1, y1, x2, y2))


class _Tally:
    """Running counts of one pass: bounded, however many lines there are."""

    def __init__(self) -> None:
        self.rows = 0
        self.with_actual = 0
        self.label_counts: dict[str, int] = {}
        # Id prefix -> lines so far with it: grows with distinct images only.
        self.occurrences: dict[str, int] = {}
        self.bad_lines = 0
        self.listed: list[str] = []

    def add_problem(self, number: int, reason: str) -> None:
        self.bad_lines += 1
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append(f"{DATA_FILE} line {number}: {reason}")

    def next_id(self, data: bytes) -> str:
        prefix = id_prefix(data)
        count = self.occurrences.get(prefix, 0) + 1
        self.occurrences[prefix] = count
        return f"{prefix}-{count}"

    def count_row(self, label: str | None) -> None:
        self.rows += 1
        if label is not None:
            self.with_actual += 1
            self.label_counts[label] = self.label_counts.get(label, 0) + 1


class _Outputs:
    """The three CSV files of one load, each on its temporary file.

    The csv module formats the headers, actuals.csv and the label cells. The
    rows of the two files with images are put together here, in bytes: none
    of their other cells can need quoting (the id is hex and "-", base64 is
    A-Z a-z 0-9 + / =, the box is whole numbers), and csv's writer is slow on
    a large cell: 3 ms per 512x512 slice, against 0.08 ms for a plain write
    (measured), which made it most of the time of a load. Bytes spare the
    base64 text two more copies (decoding it to str and encoding it back).
    """

    def __init__(self, files: AtomicFiles, folder: Path) -> None:
        self.prepared = _open_csv(files, folder / PREPARED_FILE, PREPARED_HEADER)
        self.merged = _open_csv(files, folder / MERGED_FILE, MERGED_HEADER)
        self.actuals = _open_csv(files, folder / ACTUALS_FILE, ACTUALS_HEADER)
        # Label -> the end of its merged row; as many as data.label_map has.
        self._merged_ends: dict[str | None, bytes] = {None: b",\n"}

    def write(
        self, row_id: str, data: bytes, box: tuple[int, ...], label: str | None
    ) -> None:
        head = f"{row_id},".encode("ascii")
        img = base64.b64encode(data)
        tail = f",{box[0]},{box[1]},{box[2]},{box[3]}".encode("ascii")
        self.prepared.writelines((head, img, tail, b"\n"))
        self.merged.writelines((head, img, tail, self._merged_end(label)))
        if label is not None:
            self.actuals.write(_csv_line((row_id, label)))

    def _merged_end(self, label: str | None) -> bytes:
        end = self._merged_ends.get(label)
        if end is None:
            end = self._merged_ends[label] = b"," + _csv_line((label,))
        return end


class _Pass:
    """One pass over data.txt: check each line, write it while all are good."""

    def __init__(
        self,
        images_dir: Path,
        label_map: Mapping[int, str],
        max_image_pixels: int,
        outputs: _Outputs,
    ) -> None:
        self.images_dir = images_dir
        self.images_root = os.path.realpath(images_dir)
        self.label_map = label_map
        self.max_image_pixels = max_image_pixels
        self.outputs = outputs
        self.tally = _Tally()

    def take(self, number: int, text: str) -> None:
        """Check one line and, if no line so far was bad, write its rows."""
        try:
            line = parse_line(text, self.label_map)
            data = self._read_image(line.image_name)
            width, height = _check_image(line.image_name, data, self.max_image_pixels)
            _check_box_inside(line.box, width, height)
        except BadLine as problem:
            self.tally.add_problem(number, str(problem))
            return

        # After a bad line nothing will be written: skip the hashing and encoding.
        if self.tally.bad_lines:
            return
        label = None if line.data_class is None else self.label_map[line.data_class]
        self.outputs.write(self.tally.next_id(data), data, line.box, label)
        self.tally.count_row(label)

    def _read_image(self, name: str) -> bytes:
        path = _inside_folder(self.images_root, name)
        try:
            return _read_regular_file(path)
        except FileNotFoundError:
            raise BadLine(f"image {name} not found in {self.images_dir}") from None
        except OSError as exc:
            raise BadLine(f"cannot read image {name}: {exc.strerror}") from None


def _open_csv(files: AtomicFiles, path: Path, header: tuple[str, ...]) -> IO[bytes]:
    handle: IO[bytes] = files.open(path, "wb", buffering=_WRITE_BUFFER)
    handle.write(_csv_line(header))
    return handle


def _csv_line(cells: tuple[Any, ...]) -> bytes:
    """Return one CSV row, as the csv module writes it, in UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8")


def _check_image_folder(images_dir: Path) -> None:
    if not images_dir.is_dir():
        raise InputError(
            f"the image folder {images_dir} does not exist. Pass --images DIR or "
            f"set data.images in config.yaml."
        )


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the output folder {out_dir}: {exc.strerror}. "
            f"Choose another with --out."
        ) from None


def _open_data_file(data_file: Path) -> io.TextIOWrapper:
    try:
        # utf-8-sig drops a BOM; newline=None reads CRLF and CR as line ends.
        handle = data_file.open(encoding="utf-8-sig", newline=None)
    except FileNotFoundError:
        raise InputError(
            f"{data_file} does not exist. DATASET_DIR must hold a {DATA_FILE}; "
            f"pass it, or set data.dir in config.yaml."
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {data_file}: {exc.strerror}.") from None
    return handle


def _numbered_lines(
    handle: io.TextIOWrapper, data_file: Path
) -> Iterator[tuple[int, str]]:
    """Yield the non-blank lines of data.txt with their line numbers."""
    number = 0
    try:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield number, text
    except UnicodeDecodeError:
        raise InputError(
            f"{data_file} is not UTF-8 text (near line {number + 1}). Save it as "
            f"UTF-8 and run again."
        ) from None


def _whole_number(name: str, text: str) -> int:
    # int() alone would also take "+3", "1_000" and non-ASCII digits.
    if not _WHOLE_NUMBER.fullmatch(text):
        raise BadLine(f"{name} {text!r} is not a whole number")
    return int(text)


def _check_box_shape(box: tuple[int, int, int, int]) -> None:
    for name, value in zip(_BOX_NAMES, box, strict=True):
        if value < 0:
            raise BadLine(f"box {name}={value} is outside the image (negative)")
    x1, y1, x2, y2 = box
    if x2 <= x1:
        raise BadLine(f"box is empty: x2={x2} is not greater than x1={x1}")
    if y2 <= y1:
        raise BadLine(f"box is empty: y2={y2} is not greater than y1={y1}")


def _check_box_inside(box: tuple[int, int, int, int], width: int, height: int) -> None:
    _, _, x2, y2 = box
    if x2 > width:
        raise BadLine(f"box x2={x2} is outside the image (width {width})")
    if y2 > height:
        raise BadLine(f"box y2={y2} is outside the image (height {height})")


def _inside_folder(root: str, name: str) -> str:
    """Return the real path of image ``name``, refusing one outside ``root``."""
    if "\0" in name:
        raise BadLine(f"image name {name!r} contains a NUL character")
    relative = Path(name)
    if relative.is_absolute():
        raise BadLine(
            f"image name {name} is an absolute path; names are relative to the "
            f"image folder"
        )
    if ".." in relative.parts:
        raise BadLine(f"image name {name} points outside the image folder (..)")
    real = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath((root, real)) != root:
        raise BadLine(
            f"image {name} leads to {real} through a symlink, outside the image folder"
        )
    return real


def _read_regular_file(path: str) -> bytes:
    fd = os.open(path, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadLine(f"image {os.path.basename(path)} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "rb", buffering=0) as handle:
        return handle.read()


def _check_image(name: str, data: bytes, max_pixels: int) -> tuple[int, int]:
    """Return the image's (width, height); raise ``BadLine`` if it is unusable."""
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            size = image.size
            _check_pixels(name, size, max_pixels)
            _check_whole(name, image, data)
    except Image.DecompressionBombError:
        raise BadLine(f"image {name} is too large to decode safely") from None
    except UnidentifiedImageError:
        # PIL says "unidentified" of a PNG or JPEG cut short in its header too.
        if data.startswith(_SIGNATURES):
            raise BadLine(f"image {name} is broken or truncated (header)") from None
        raise BadLine(f"image {name} is not a PNG or JPEG image") from None
    except _BROKEN_IMAGE_ERRORS as exc:
        raise BadLine(f"image {name} is broken or truncated ({exc})") from None
    return size


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise BadLine(
            f"image {name} is {width}x{height} = {width * height:,} pixels, too "
            f"large to decode safely (data.max_image_pixels: {max_pixels:,})"
        )


def _check_whole(name: str, image: Image.Image, data: bytes) -> None:
    """Check that the image is complete, without decoding it (module doc)."""
    if image.format == "PNG":
        image.verify()
    elif data.find(_JPEG_END, len(data) - len(_JPEG_END) - _JPEG_TRAILER_SLACK) < 0:
        raise BadLine(f"image {name} is a truncated JPEG (no end-of-image marker)")


@contextlib.contextmanager
def _without_pil_size_warnings() -> Iterator[None]:
    # max_image_pixels decides; PIL's own warning for images between its
    # limit and twice it would only be noise beside our message.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _check_tally(tally: _Tally, data_file: Path) -> None:
    if tally.bad_lines:
        raise InputError(_bad_lines_message(tally, data_file))
    if not tally.rows:
        raise InputError(
            f"{data_file} has no data lines. Each line is `image class x1 y1 x2 "
            f"y2`, or `image x1 y1 x2 y2` for a slice without a class."
        )


def _bad_lines_message(tally: _Tally, data_file: Path) -> str:
    plural = "s" if tally.bad_lines != 1 else ""
    lines = [
        f"{data_file} has {tally.bad_lines} bad line{plural}; nothing was written. "
        f"Fix {'them' if plural else 'it'} and run again:",
        *(f"  {problem}" for problem in tally.listed),
    ]
    unlisted = tally.bad_lines - len(tally.listed)
    if unlisted:
        lines.append(f"  and {unlisted} more")
    return "\n".join(lines)


def _report(tally: _Tally, data_file: Path, out_dir: Path) -> LoadReport:
    return LoadReport(
        data_file=data_file,
        rows=tally.rows,
        rows_with_actual=tally.with_actual,
        rows_without_actual=tally.rows - tally.with_actual,
        label_counts=dict(sorted(tally.label_counts.items())),
        prepared=out_dir / PREPARED_FILE,
        actuals=out_dir / ACTUALS_FILE,
        merged=out_dir / MERGED_FILE,
    )
