"""Safe image loading: every image that enters the app passes through `load_image`.

Pillow decodes and validates first; only arrays that Pillow produced reach OpenCV or torch.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Union[bytes, bytearray, str, os.PathLike, BinaryIO]

#: Formats the app accepts, by what Pillow detects from the content (never from the file name).
ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WebP", "GIF": "GIF",
                   "BMP": "BMP", "TIFF": "TIFF"}
FORMATS_SENTENCE = "Use a PNG, JPEG, WebP, GIF, BMP or TIFF image."
DEFAULT_MAX_PIXELS = 40_000_000   # 40 MP: a large phone photo fits; Pillow warns only at ~89 MP
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # same as server.maxUploadSize in .streamlit/config.toml
# Shape policy, decided on the header before decoding. Every use scales the *short* side to the
# model's size (resize_crop) or the long side to the screen (resize_to_fit); a 3 × 2,000,000 strip
# scaled to a 224-pixel short side is 224 × 149 million pixels (100 GB), so a strip is refused.
# With both limits, scaling an accepted image to a short side of s holds at most 20·s² pixels.
MAX_ASPECT = 20       # long side ÷ short side; panoramas are 4–10, banners and strips beyond 20
MAX_SIDE = 20_000     # pixels on the long side (40 MP at 20:1 would be 28,284 × 1,414)


class ImageError(ValueError):
    """An input that is not a usable image; the message is a sentence for the user."""


def _read_bytes(source: ImageSource, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"There is no image file at {path.name!s}.")
        try:
            if path.stat().st_size > max_bytes:
                raise ImageError(f"This file is {path.stat().st_size / 1e6:.1f} MB, over the "
                                 f"{max_bytes / 1e6:.0f} MB limit. Use a smaller image.")
            with open(path, "rb") as f:   # read at most the cap: the file may grow meanwhile
                data = f.read(max_bytes + 1)
        except OSError as exc:   # vanished, unreadable, a name the filesystem refuses
            raise ImageError(f"The file {path.name!s} could not be read "
                             f"({exc.strerror or 'error'}).") from None
    elif hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read(max_bytes + 1)
    else:
        raise ImageError("That is not an image source (expected bytes, a path or a file).")
    if len(data) > max_bytes:
        raise ImageError(f"This file is over the {max_bytes / 1e6:.0f} MB limit. Use a smaller image.")
    if not data:
        raise ImageError("This file is empty. " + FORMATS_SENTENCE)
    return data


def _describe_non_image(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "it looks like an HTML page"
    if head.startswith(b"<svg") or b"<svg" in head:
        return "it looks like an SVG drawing, which is text, not pixels"
    if head.startswith(b"%pdf"):
        return "it looks like a PDF document"
    if head.startswith(b"simple  =") or head.startswith(b"simple ="):
        return "it looks like a FITS astronomy file"
    if head.startswith(b"8bps"):
        return "it looks like a Photoshop (PSD) file"
    try:
        head.decode("utf-8")
        return "it looks like text"
    except UnicodeDecodeError:
        return "its content is not a known image format"


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to uint8 RGB, scaling 16- and 32-bit data instead of clipping it."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            top = 65535.0
        else:
            top = float(arr.max()) if arr.size and arr.max() > 255 else 255.0
            arr = np.clip(arr, 0, None)
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa"):
        # Transparent areas become white, as they look in a browser on a light page.
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return np.asarray(img, dtype=np.uint8).copy()


def _bomb_error(exc: Exception, max_pixels: int) -> ImageError:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "far more pixels than it holds"
    return ImageError(f"This image declares {size}, over the {max_pixels / 1e6:.0f}-megapixel limit "
                      "(a possible decompression bomb), so it was not decoded. Use a smaller image.")


def check_shape(width: int, height: int) -> str | None:
    """Why an image of width × height is refused by the shape policy (a sentence), or None.

    The one place the policy lives: load_image applies it to every file before decoding it, and
    engine.data.resize_crop applies it to any array handed to it directly."""
    long, short = max(width, height), min(width, height)
    if short < 1:
        return f"This image is {width}×{height} pixels, which holds no picture. Use another image."
    if long > MAX_ASPECT * short:
        return (f"This image is {width}×{height} pixels: its long side is {long / short:,.0f} times "
                f"its short side, over the {MAX_ASPECT}:1 limit (scaled for a model it would need "
                f"gigabytes), so it was refused. Crop it to a less extreme shape.")
    if long > MAX_SIDE:
        return (f"This image is {width}×{height} pixels; its long side is over the "
                f"{MAX_SIDE:,}-pixel limit, so it was refused. Use a smaller image.")
    return None


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES, min_side: int = 3) -> np.ndarray:
    """Decode an image safely to a uint8 array of shape (H, W, 3).

    source: bytes, a path, or a binary file object. EXIF orientation is applied; alpha is
    composited on white; palette, greyscale, CMYK and 16-bit images become 8-bit RGB; an animated
    image gives its first frame. Raises ImageError (a ValueError) with a sentence for the user for
    anything else: not an image, a format outside the allow-list, a truncated file, more pixels than
    `max_pixels` (decompression bombs included), a side shorter than `min_side`, or a shape
    outside the policy of check_shape (a long side over MAX_SIDE, or over MAX_ASPECT times the
    short side), all decided from the header before any pixel is decoded.
    """
    data = _read_bytes(source, max_bytes)
    with warnings.catch_warnings():
        # Pillow's DecompressionBombWarning becomes an error: a bomb must never be decoded.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, SyntaxError, ValueError, TypeError, OSError, EOFError):
            raise ImageError(f"This file is not an image the app can read "
                             f"({_describe_non_image(data)}). {FORMATS_SENTENCE}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(exc, max_pixels) from None
        with img:
            fmt = (img.format or "").upper()
            if fmt not in ALLOWED_FORMATS:
                raise ImageError(f"This is a {fmt or 'unknown'} file, which the app does not accept. "
                                 f"{FORMATS_SENTENCE}")
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(f"This image declares {width}×{height} pixels "
                                 f"({width * height / 1e6:.0f} megapixels), over the "
                                 f"{max_pixels / 1e6:.0f}-megapixel limit, so it was not decoded. "
                                 f"Use a smaller image.")
            if min(width, height) < min_side:
                raise ImageError(f"This image is only {width}×{height} pixels; it needs at least "
                                 f"{min_side}×{min_side} (a 3×3 kernel has to fit).")
            shape_problem = check_shape(width, height)
            if shape_problem:
                raise ImageError(shape_problem)
            try:
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb_array(img)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _bomb_error(exc, max_pixels) from None
            except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
                reason = "it is cut short (truncated)" if "truncat" in str(exc).lower() else \
                    "its pixel data is damaged"
                raise ImageError(f"This {ALLOWED_FORMATS[fmt]} file cannot be decoded: {reason}. "
                                 f"Try saving or exporting it again.") from None


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma (ITU-R BT.601 weights, as OpenCV and Pillow use)."""
    import cv2
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def resize_to_fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the longer side is at most max_side; area averaging keeps detail."""
    import cv2
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) RGB array as PNG bytes."""
    import cv2
    arr = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ImageError("The image could not be encoded for display.")
    return buf.tobytes()


def encode_jpeg(image: np.ndarray, quality: int = 88) -> bytes:
    """Encode a uint8 RGB or grey array as JPEG bytes (smaller than PNG for photos on a page)."""
    import cv2
    arr = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("The image could not be encoded for display.")
    return buf.tobytes()
