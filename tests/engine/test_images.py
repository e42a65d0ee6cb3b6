"""load_image on every bad input the issue names, and on the odd-but-valid modes it must convert."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.images import ImageError, load_image, resize_to_fit


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(w=40, h=30) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims width×height pixels (a decompression bomb)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_allowed_format_loads_as_rgb_uint8(fmt):
    out = load_image(encode(photo(), fmt))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_path_and_file_object_sources(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(encode(photo()))
    assert load_image(p).shape == (30, 40, 3)
    assert load_image(str(p)).shape == (30, 40, 3)
    with open(p, "rb") as f:
        assert load_image(f).shape == (30, 40, 3)


def test_text_file_named_png_is_rejected_by_content(tmp_path):
    p = tmp_path / "fake.png"
    p.write_text("hello, I am not a picture\n")
    with pytest.raises(ImageError, match="not an image.*looks like text"):
        load_image(p)


def test_html_page_is_named_as_such():
    with pytest.raises(ImageError, match="HTML"):
        load_image(b"<!DOCTYPE html><html><body>404</body></html>")


def test_truncated_jpeg_is_rejected():
    data = encode(photo(200, 150), "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated|damaged"):
        load_image(data[: len(data) // 2])


def test_png_declaring_20000_squared_is_rejected_before_decoding():
    with pytest.raises(ImageError, match="400 megapixels"):
        load_image(png_declaring(20000, 20000))


def test_pillow_warning_range_is_rejected_even_with_a_large_max_pixels():
    # Between Pillow's warning (~89 MP) and error (~179 MP) limits: must not be decoded.
    w = h = 10_000  # 100 MP
    with pytest.raises(ImageError, match="decompression bomb|megapixel"):
        load_image(png_declaring(w, h), max_pixels=10**9)


def test_max_pixels_is_honoured():
    with pytest.raises(ImageError, match="megapixel"):
        load_image(encode(photo(100, 100)), max_pixels=5_000)


def test_1x1_image_is_rejected_with_a_reason():
    with pytest.raises(ImageError, match="1×1"):
        load_image(encode(Image.new("RGB", (1, 1))))


def test_empty_and_oversized_inputs():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="limit"):
        load_image(encode(photo()), max_bytes=100)


def test_cmyk_becomes_rgb():
    cmyk = Image.new("CMYK", (10, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(encode(cmyk, "JPEG", quality=95))
    assert out.shape == (8, 10, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60


def test_16_bit_grey_is_scaled_not_clipped():
    arr = np.full((6, 7), 32768, np.uint16)
    arr[0, 0] = 65535
    out = load_image(encode(Image.fromarray(arr)))
    assert out.shape == (6, 7, 3)
    assert abs(int(out[1, 1, 0]) - 128) <= 1 and out[0, 0, 0] == 255


def test_palette_with_transparency_and_alpha_composite_on_white():
    rgba = Image.new("RGBA", (5, 5), (255, 0, 0, 0))       # fully transparent red
    out = load_image(encode(rgba))
    assert np.all(out == 255)
    half = Image.new("RGBA", (5, 5), (0, 0, 0, 128))        # half-transparent black
    assert abs(int(load_image(encode(half))[0, 0, 0]) - 127) <= 2
    pal = Image.new("P", (5, 5), 0)
    pal.putpalette([10, 20, 30] + [0] * 765)
    assert tuple(load_image(encode(pal))[0, 0]) == (10, 20, 30)
    pal.info["transparency"] = 0
    assert tuple(load_image(encode(pal, transparency=0))[0, 0]) == (255, 255, 255)


def test_greyscale_and_la_modes():
    assert load_image(encode(Image.new("L", (4, 4), 77)))[0, 0].tolist() == [77, 77, 77]
    assert load_image(encode(Image.new("LA", (4, 4), (77, 255))))[0, 0].tolist() == [77, 77, 77]


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    out = load_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.shape == (40, 20, 3)


def test_formats_outside_the_allow_list_are_rejected():
    ico = encode(photo(16, 16), "ICO")
    with pytest.raises(ImageError, match="does not accept"):
        load_image(ico)
    psd_like = b"8BPS" + b"\x00" * 100
    with pytest.raises(ImageError, match="Photoshop"):
        load_image(psd_like)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (6, 6), c) for c in [(255, 0, 0), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue())
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 50


def test_resize_to_fit_only_shrinks():
    a = np.zeros((100, 50, 3), np.uint8)
    assert resize_to_fit(a, 40).shape == (40, 20, 3)
    assert resize_to_fit(a, 400) is a
