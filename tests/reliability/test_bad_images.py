"""Cases 13, 15 and 20 of issue 8: formats outside the allow-list, OpenCV only ever sees arrays that
Pillow produced, and a fuzz test of `engine.images.load_image` (only ImageError escapes)."""
from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.images import ImageError, load_image, resize_to_fit, to_grey

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # Pillow on damaged metadata


def encode(fmt: str, side: int = 12, mode: str = "RGB", **kw) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (side, side + 3, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def fits_file() -> bytes:
    """A real, minimal FITS image (4×4, 8-bit): Pillow can open it, the app must not accept it."""
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8",
             "NAXIS   =                    2", "NAXIS1  =                    4",
             "NAXIS2  =                    4", "END"]
    header = "".join(c.ljust(80) for c in cards).ljust(2880).encode("ascii")
    return header + bytes(range(16)).ljust(2880, b"\0")


# Case 13 ------------------------------------------------------------------------------------------
def test_a_fits_file_named_png_is_rejected_by_content(tmp_path):
    path = tmp_path / "galaxy.png"
    path.write_bytes(fits_file())
    with pytest.raises(ImageError, match="FITS") as err:
        load_image(path)
    assert "PNG, JPEG" in str(err.value)      # and it says what to use instead


# Case 15 ------------------------------------------------------------------------------------------
CV2_DECODERS = {"imdecode", "imread", "imreadmulti", "imreadanimation", "imdecodemulti",
                "VideoCapture", "imcount"}


def test_no_app_code_hands_files_or_bytes_to_opencv():
    """OpenCV's own decoders never run on user input: the app's code calls none of them."""
    offenders = []
    for folder in ("engine", "ui", "pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr in CV2_DECODERS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    assert offenders == []


def test_images_reach_opencv_only_as_arrays_pillow_decoded(monkeypatch, tmp_path):
    import cv2

    seen: list[type] = []

    def refuse(*a, **k):
        raise AssertionError("an OpenCV decoder was called on user input")

    for name in CV2_DECODERS & set(dir(cv2)):
        monkeypatch.setattr(cv2, name, refuse)
    for name in ("resize", "cvtColor"):
        real = getattr(cv2, name)

        def spy(src, *a, _real=real, **k):
            seen.append(type(src))
            assert isinstance(src, np.ndarray) and src.dtype == np.uint8
            return _real(src, *a, **k)
        monkeypatch.setattr(cv2, name, spy)

    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
        img = load_image(encode(fmt, side=64))
        to_grey(resize_to_fit(img, 32))
    from engine.data import verify_images
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ok.png").write_bytes(encode("PNG", 16))
    (tmp_path / "a" / "fake.png").write_bytes(b"<html>not an image</html>")
    bad = verify_images(tmp_path)
    assert [p.name for p, _ in bad] == ["fake.png"]
    assert seen and set(seen) == {np.ndarray}


# Case 20 ------------------------------------------------------------------------------------------
SEEDS = [encode("PNG"), encode("PNG", mode="P"), encode("PNG", mode="LA"), encode("JPEG"),
         encode("JPEG", mode="CMYK"), encode("GIF"), encode("BMP"), encode("TIFF"),
         encode("TIFF", compression="tiff_lzw"), encode("WEBP"), encode("PNG", mode="I;16")]


@st.composite
def mutated_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "big"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[pos:]
        elif op == "big" and len(data) > pos + 4:   # a huge number where a size might be
            data[pos:pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
                                                      b"\x00\x00\x00\x00", b"\x00\x01\x00\x00"]))
    return bytes(data)


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated_image())
def test_fuzzed_image_bytes_only_ever_raise_image_error(data):
    try:
        out = load_image(data, max_pixels=4_000_000)
    except ImageError as exc:
        assert str(exc).strip() and "Traceback" not in str(exc)
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
