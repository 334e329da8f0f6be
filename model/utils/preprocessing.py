"""Turn one request row (a base64 image and its box) into a model input.

Serving (``scoring``) and training (``training/train.py``) both go through
these functions, so the model is trained on exactly the pixels it is later
asked about. The steps, in order:

1. ``decode_base64``: the ``img`` cell to the image file's bytes.
2. ``open_image``: PNG or JPEG only; the pixel count is checked from the
   header, before any decoding.
3. ``to_rgb8``: every accepted mode to an explicit H x W x 3 uint8 array.
4. ``crop_to_box``: the box, clamped to the image.
5. ``to_model_input``: grey if the model wants one channel, resize to the
   model's input size, DenseNet-style scaling.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

# Images with more pixels than this are refused from their header alone: a
# small PNG can decompress to gigabytes. The same default as drtool's
# data.max_image_pixels; a 512 x 512 CT slice has 262,144.
MAX_IMAGE_PIXELS = 50_000_000

# The only file formats accepted: what CT slices are exported as. Refusing
# the rest keeps PIL's rarer (and less hardened) decoders out of the server.
ACCEPTED_FORMATS = ("PNG", "JPEG")

# Greyscale modes with more than 8 bits per pixel; see ``stretch_to_uint8``.
WIDE_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})

# DenseNet's ImageNet statistics per RGB channel, on the 0-1 scale.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# ITU-R 601-2 luma weights, the ones PIL's convert("L") uses. A one-channel
# model gets grey made with them, and the ImageNet statistics projected
# through the same weights, so grey and colour inputs are scaled alike.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
GREY_MEAN = float(LUMA @ IMAGENET_MEAN)
GREY_STD = float(LUMA @ IMAGENET_STD)

BOX_COLUMNS = ("x1", "y1", "x2", "y2")
_INTEGER = re.compile(r"[+-]?\d+")


class InputError(ValueError):
    """One row's image or box cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class InputSpec:
    """The input one model takes: height, width, and 1 or 3 channels."""

    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class Box:
    """A region in pixels; x2 and y2 are exclusive, as in data.txt."""

    x1: int
    y1: int
    x2: int
    y2: int

    def __str__(self) -> str:
        return f"x1={self.x1} y1={self.y1} x2={self.x2} y2={self.y2}"


def parse_box(row: Mapping[str, str | None]) -> Box:
    """Read the four box cells of a row; each must be a whole number."""
    values = []
    for column in BOX_COLUMNS:
        text = (row.get(column) or "").strip()
        if not _INTEGER.fullmatch(text):
            raise InputError(f"box column {column} is {text!r}, not a whole number")
        values.append(int(text))
    return Box(*values)


def decode_base64(cell: str) -> bytes:
    """Return the image file bytes held in an ``img`` cell.

    The cell is plain base64, or the manual workflow's accidental Python
    bytes repr of it, ``b'...'``. Base64 never contains quotes, so removing
    the wrapper cannot change the payload.
    """
    text = cell.strip()
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        text = text[2:-1]
    # Line breaks, as MIME base64 encoders insert them, are not data.
    text = "".join(text.split())
    if not text:
        raise InputError("img is empty")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("img is not valid base64") from None


def open_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode PNG or JPEG bytes, refusing oversize images before decoding."""
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InputError("img is not a PNG or JPEG image") from None
    except Image.DecompressionBombError:
        raise InputError(f"img has more than {max_pixels:,} pixels") from None

    # Image.open has read the header only: the size is known, nothing decoded.
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            f"img is {width}x{height} = {width * height:,} pixels, over the "
            f"limit of {max_pixels:,}"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        # PIL reports truncated or corrupt files with any of these.
        raise InputError(f"img could not be decoded: {exc}") from None
    return image


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Return the image as an explicit H x W x 3 uint8 array.

    Grey is copied into three channels here, not by a library default
    (the manual workflow relied on one). Transparent pixels are laid over
    black, the background of a CT slice.
    """
    if image.mode in WIDE_GREY_MODES:
        return grey_to_rgb(stretch_to_uint8(np.asarray(image)))
    if image.mode in ("P", "PA"):
        # A palette may mark entries transparent; RGBA keeps that.
        image = image.convert("RGBA")
    elif image.mode not in ("L", "LA", "RGB", "RGBA"):
        # 1-bit, CMYK and YCbCr: PIL's own conversion to RGB is exact.
        image = image.convert("RGB")

    pixels = np.asarray(image)
    if image.mode in ("LA", "RGBA"):
        pixels = over_black(pixels)
    if image.mode in ("L", "LA"):
        pixels = grey_to_rgb(pixels.reshape(pixels.shape[:2]))
    return pixels


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a wide greyscale image's own value range linearly onto 0-255.

    16-bit CT exports seldom use the full 0-65535 range (12-bit scanner
    values are common), so dividing by 257 would leave a nearly black
    slice. Stretching the image's own minimum to 0 and maximum to 255
    matches the 8-bit COVIDx slices, which span the full range. A flat
    image becomes all zeros.
    """
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """Copy an H x W grey array into three identical channels."""
    return np.repeat(grey[:, :, np.newaxis], 3, axis=2)


def over_black(pixels: np.ndarray) -> np.ndarray:
    """Lay an image with a last alpha channel over black; drop the alpha."""
    alpha = pixels[:, :, -1:].astype(np.float32) / 255.0
    colour = pixels[:, :, :-1].astype(np.float32) * alpha
    return np.rint(colour).astype(np.uint8)


def crop_to_box(pixels: np.ndarray, box: Box) -> np.ndarray:
    """Cut the box out of the image, first clamping it to the image's edges."""
    height, width = pixels.shape[:2]
    x1, x2 = max(box.x1, 0), min(box.x2, width)
    y1, y2 = max(box.y1, 0), min(box.y2, height)
    if x2 <= x1 or y2 <= y1:
        raise InputError(
            f"box {box} holds no pixel of the {width}x{height} image "
            f"(x2 and y2 are exclusive)"
        )
    return pixels[y1:y2, x1:x2]


def to_model_input(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize an RGB uint8 crop to the model's input and scale it.

    Returns float32 of shape (height, width, channels).
    """
    if spec.channels == 1:
        grey = np.rint(rgb.astype(np.float32) @ LUMA).astype(np.uint8)
        resized = resize(grey, spec)[:, :, np.newaxis]
        return ((resized / 255.0 - GREY_MEAN) / GREY_STD).astype(np.float32)

    resized = resize(rgb, spec)
    return ((resized / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def resize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize a uint8 array to the spec's height and width, bilinearly.

    PIL's bilinear filter widens with the reduction, so downsizing a 512
    pixel slice to 128 averages the pixels it drops instead of aliasing.
    """
    image = Image.fromarray(pixels)
    size = (spec.width, spec.height)
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


def prepare(
    cell: str, box: Box, spec: InputSpec, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Run every step: an ``img`` cell and its box to one model input."""
    image = open_image(decode_base64(cell), max_pixels)
    crop = crop_to_box(to_rgb8(image), box)
    return to_model_input(crop, spec)
