"""Make test images in memory, in every mode the model's preprocessing accepts."""

from __future__ import annotations

import base64
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

MODEL_DIR = Path(__file__).resolve().parent.parent / "model"


def use_model_code() -> None:
    """Make model/'s ``utils`` importable, as DRUM does: folder first on the path."""
    if str(MODEL_DIR) not in sys.path:
        sys.path.insert(0, str(MODEL_DIR))


def ramp(width: int = 40, height: int = 30) -> np.ndarray:
    """A uint8 grey ramp with distinct values, so crops and flips show."""
    x = np.arange(width, dtype=np.float32)[np.newaxis, :]
    y = np.arange(height, dtype=np.float32)[:, np.newaxis]
    return np.rint((x * 4 + y * 3) % 256).astype(np.uint8)


def body_slice(size: int = 64) -> np.ndarray:
    """A CT-like uint8 slice: a bright ellipse (the body) on black."""
    y, x = np.mgrid[0:size, 0:size]
    inside = ((x - size / 2) / (size * 0.45)) ** 2 + (
        (y - size / 2) / (size * 0.3)
    ) ** 2
    pixels = np.where(inside <= 1.0, 180, 0).astype(np.uint8)
    pixels[size // 3 : size // 2, size // 4 : size // 2] = 40  # a dark "lung"
    return pixels


def grey16(values: np.ndarray, mode: str = "I;16") -> Image.Image:
    """A 16-bit greyscale image, little- or big-endian (I;16, I;16B)."""
    order = ">u2" if mode == "I;16B" else "<u2"
    height, width = values.shape
    return Image.frombytes(mode, (width, height), values.astype(order).tobytes())


def image_in_mode(mode: str, grey: np.ndarray | None = None) -> Image.Image:
    """An image of the ramp (or ``grey``) in ``mode``, with known pixel values.

    - L: the grey values. I;16, I;16B, I: grey * 100 + 1000 (stretched back).
    - RGB: grey in red, 255 - grey in green, 7 in blue.
    - RGBA / LA: as RGB / L, opaque left half, half-transparent right half.
    - P: a palette of four colours, index = grey % 4.
    """
    grey = ramp() if grey is None else grey
    if mode in ("I;16", "I;16B"):
        return grey16(grey.astype(np.uint16) * 100 + 1000, mode)
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 100 + 1000, mode="I")
    if mode == "L":
        return Image.fromarray(grey, mode="L")
    if mode == "RGB":
        return Image.fromarray(rgb_of(grey), mode="RGB")
    if mode in ("RGBA", "LA"):
        colour = image_in_mode("RGB" if mode == "RGBA" else "L", grey)
        alpha = Image.fromarray(alpha_of(grey), mode="L")
        return Image.merge(mode, [*colour.split(), alpha])
    if mode == "P":
        image = Image.fromarray(grey % 4, mode="P")
        image.putpalette(PALETTE.flatten().tolist())
        return image
    raise ValueError(f"no test image for mode {mode}")


PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]], np.uint8)


def rgb_of(grey: np.ndarray) -> np.ndarray:
    blue = np.full_like(grey, 7)
    return np.stack([grey, 255 - grey, blue], axis=2)


def alpha_of(grey: np.ndarray) -> np.ndarray:
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, grey.shape[1] // 2 :] = 128
    return alpha


def encode(image: Image.Image, image_format: str = "PNG") -> bytes:
    """The bytes of ``image`` saved as a PNG or JPEG file."""
    buffer = io.BytesIO()
    options = {"quality": 95} if image_format == "JPEG" else {}
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def to_cell(data: bytes, wrapped: bool = False) -> str:
    """An ``img`` cell: plain base64, or the manual workflow's ``b'...'`` repr."""
    text = base64.b64encode(data).decode("ascii")
    return f"b'{text}'" if wrapped else text


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds almost no data.

    Opening it reads the size; decoding it fails. A refusal that names the
    size therefore proves the check ran before decoding.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def csv_body(rows: list[tuple[object, ...]]) -> str:
    """A request body: header id,img,x1,y1,x2,y2 and one line per row."""
    lines = ["id,img,x1,y1,x2,y2"]
    lines += [",".join(str(cell) for cell in row) for row in rows]
    return "\n".join(lines) + "\n"
