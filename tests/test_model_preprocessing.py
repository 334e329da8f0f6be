"""The model's image preprocessing (model/utils/preprocessing.py), without Keras."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests import imaging

imaging.use_model_code()

from utils import preprocessing as pp  # noqa: E402

SPEC = pp.InputSpec(height=128, width=128, channels=3)
GREY = imaging.ramp()  # 40 x 30
WHOLE = pp.Box(0, 0, 40, 30)


def decoded(image: Image.Image, image_format: str = "PNG") -> np.ndarray:
    """Encode, wrap in base64 and decode again, as a request row travels."""
    cell = imaging.to_cell(imaging.encode(image, image_format))
    return pp.to_rgb8(pp.open_image(pp.decode_base64(cell)))


def channels_equal(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[:, :, 0], rgb[:, :, 1])) and bool(
        np.array_equal(rgb[:, :, 1], rgb[:, :, 2])
    )


def test_8_bit_grey_is_copied_into_three_channels() -> None:
    rgb = decoded(imaging.image_in_mode("L"))

    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert channels_equal(rgb)
    assert np.array_equal(rgb[:, :, 0], GREY)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_wide_grey_is_stretched_from_its_own_range(mode: str) -> None:
    image = imaging.image_in_mode(mode)  # values GREY * 100 + 1000
    # PNG stores 16 bits; mode I cannot be written as PNG, so it goes directly.
    rgb = decoded(image) if mode != "I" else pp.to_rgb8(image)

    expected = np.rint((GREY - GREY.min()) * (255.0 / (GREY.max() - GREY.min())))
    assert channels_equal(rgb)
    assert np.array_equal(rgb[:, :, 0], expected.astype(np.uint8))
    assert rgb.min() == 0 and rgb.max() == 255


def test_flat_16_bit_image_becomes_black() -> None:
    flat = imaging.grey16(np.full((5, 6), 4000, np.uint16))

    assert not decoded(flat).any()


def test_rgb_keeps_its_channels() -> None:
    rgb = decoded(imaging.image_in_mode("RGB"))

    assert np.array_equal(rgb, imaging.rgb_of(GREY))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_laid_over_black(mode: str) -> None:
    rgb = decoded(imaging.image_in_mode(mode)).astype(int)
    colour = imaging.rgb_of(GREY) if mode == "RGBA" else np.stack([GREY] * 3, axis=2)

    opaque, half = slice(0, 20), slice(20, 40)
    assert np.array_equal(rgb[:, opaque], colour[:, opaque])
    expected = np.rint(colour[:, half] * (128 / 255))
    assert np.abs(rgb[:, half] - expected).max() <= 1


def test_palette_colours_are_looked_up() -> None:
    rgb = decoded(imaging.image_in_mode("P"))

    assert np.array_equal(rgb, imaging.PALETTE[GREY % 4])


def test_palette_transparency_is_honoured() -> None:
    image = imaging.image_in_mode("P")
    image.info["transparency"] = 1  # palette entry 1 (red) is transparent

    rgb = decoded(image)

    assert not rgb[GREY % 4 == 1].any()
    assert np.array_equal(
        rgb[GREY % 4 == 2], [[0, 255, 0]] * int((GREY % 4 == 2).sum())
    )


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_decodes_close_to_the_original(mode: str) -> None:
    smooth = np.tile(np.linspace(0, 250, 64).astype(np.uint8), (48, 1))
    original = imaging.image_in_mode(mode, smooth)

    rgb = decoded(original, "JPEG").astype(int)

    expected = np.asarray(original.convert("RGB")).astype(int)
    assert rgb.shape == (48, 64, 3)
    assert np.abs(rgb - expected).mean() < 4


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA", "LA", "P"])
def test_every_png_mode_gives_a_model_input(mode: str) -> None:
    cell = imaging.to_cell(imaging.encode(imaging.image_in_mode(mode)))

    x = pp.prepare(cell, pp.Box(2, 3, 30, 25), SPEC)

    assert x.shape == (128, 128, 3) and x.dtype == np.float32
    assert np.isfinite(x).all()


def test_jpeg_gives_a_model_input() -> None:
    cell = imaging.to_cell(imaging.encode(imaging.image_in_mode("RGB"), "JPEG"))

    assert pp.prepare(cell, WHOLE, SPEC).shape == (128, 128, 3)


def test_scaling_is_densenet_style() -> None:
    grey = np.full((10, 10), 128, np.uint8)

    x = pp.to_model_input(pp.grey_to_rgb(grey), SPEC)

    expected = (128 / 255 - pp.IMAGENET_MEAN) / pp.IMAGENET_STD
    assert np.allclose(x, expected[np.newaxis, np.newaxis, :], atol=1e-6)


def test_resize_reads_height_and_width_from_the_spec() -> None:
    x = pp.to_model_input(pp.grey_to_rgb(GREY), pp.InputSpec(24, 56, 3))

    assert x.shape == (24, 56, 3)


def test_one_channel_model_gets_luma_grey() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :] = [200, 100, 50]
    spec = pp.InputSpec(height=4, width=4, channels=1)

    x = pp.to_model_input(rgb, spec)

    grey = round(200 * 0.299 + 100 * 0.587 + 50 * 0.114)
    assert x.shape == (4, 4, 1)
    assert np.allclose(x, (grey / 255 - pp.GREY_MEAN) / pp.GREY_STD, atol=1e-6)


def test_box_crops_with_x2_and_y2_exclusive() -> None:
    crop = pp.crop_to_box(pp.grey_to_rgb(GREY), pp.Box(5, 4, 12, 9))

    assert crop.shape == (5, 7, 3)
    assert np.array_equal(crop[:, :, 0], GREY[4:9, 5:12])


def test_box_is_clamped_to_the_image() -> None:
    crop = pp.crop_to_box(pp.grey_to_rgb(GREY), pp.Box(-10, -5, 400, 300))

    assert np.array_equal(crop[:, :, 0], GREY)


@pytest.mark.parametrize(
    "box",
    [
        pp.Box(40, 0, 60, 30),
        pp.Box(-9, 0, 0, 30),
        pp.Box(10, 10, 10, 20),
        pp.Box(20, 5, 10, 9),
    ],
)
def test_box_empty_after_clamping_is_an_error(box: pp.Box) -> None:
    with pytest.raises(
        pp.InputError, match=r"box .* holds no pixel of the 40x30 image"
    ):
        pp.crop_to_box(pp.grey_to_rgb(GREY), box)


def test_box_cells_must_be_whole_numbers() -> None:
    assert pp.parse_box({"x1": " 1", "y1": "-2", "x2": "+3", "y2": "4"}) == pp.Box(
        1, -2, 3, 4
    )

    for bad in ("1.5", "", "abc", "1_000", None):
        cells = {"x1": "0", "y1": "0", "x2": bad, "y2": "4"}
        with pytest.raises(
            pp.InputError, match="box column x2 is .* not a whole number"
        ):
            pp.parse_box(cells)


def test_bytes_repr_wrapper_is_accepted() -> None:
    data = imaging.encode(imaging.image_in_mode("L"))

    plain = pp.decode_base64(imaging.to_cell(data))

    assert plain == data
    assert pp.decode_base64(imaging.to_cell(data, wrapped=True)) == data
    assert pp.decode_base64('b"' + imaging.to_cell(data) + '"') == data


def test_base64_line_breaks_are_ignored() -> None:
    data = imaging.encode(imaging.image_in_mode("L"))
    text = imaging.to_cell(data)

    assert (
        pp.decode_base64("\n".join(text[i : i + 76] for i in range(0, len(text), 76)))
        == data
    )


@pytest.mark.parametrize("cell", ["!!!not base64!!!", "abc", "b'@@@@'", "aGVsbG8=x"])
def test_bad_base64_is_an_error(cell: str) -> None:
    with pytest.raises(pp.InputError, match="img is not valid base64"):
        pp.decode_base64(cell)


@pytest.mark.parametrize("cell", ["", "   ", "b''"])
def test_empty_img_is_an_error(cell: str) -> None:
    with pytest.raises(pp.InputError, match="img is empty"):
        pp.decode_base64(cell)


def test_bytes_that_are_no_image_are_an_error() -> None:
    with pytest.raises(pp.InputError, match="not a PNG or JPEG image"):
        pp.open_image(b"hello, this is text")


def test_other_image_formats_are_refused() -> None:
    with pytest.raises(pp.InputError, match="not a PNG or JPEG image"):
        pp.open_image(imaging.encode(imaging.image_in_mode("L"), "BMP"))


def test_truncated_png_is_an_error() -> None:
    data = imaging.encode(imaging.image_in_mode("RGB"))

    with pytest.raises(pp.InputError, match="img could not be decoded"):
        pp.open_image(data[: len(data) // 2])


def test_oversize_image_is_refused_before_decoding() -> None:
    # 8000 x 8000 = 64 M pixels, over the default 50 M; the file holds no
    # pixel data, so only a check made before decoding can name the size.
    with pytest.raises(pp.InputError, match="8000x8000 = 64,000,000 pixels, over"):
        pp.open_image(imaging.png_header_only(8000, 8000))


def test_pixel_limit_is_a_parameter() -> None:
    data = imaging.encode(imaging.image_in_mode("L"))  # 40 x 30 = 1,200

    assert pp.open_image(data, max_pixels=1200).size == (40, 30)
    with pytest.raises(pp.InputError, match="over the limit of 1,199"):
        pp.open_image(data, max_pixels=1199)


def test_decompression_bomb_beyond_pil_limit_is_refused() -> None:
    with pytest.raises(pp.InputError, match="more than"):
        pp.open_image(imaging.png_header_only(30000, 30000))
