"""The Kernel Playground's controls: its state (defaults, then a shared link's values), the photo
source, the 3×3 kernel grid and the output options. Each returns plain values.
"""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from engine import kernels
from engine.images import ImageError, load_image, resize_to_fit, to_grey
from engine.samples import SAMPLES, load_sample
from ui import state, urlstate

PAGE = "kernels"
WORK_SIZES = {0: "full size", 2048: "2048 px", 1024: "1024 px", 512: "512 px"}
DISPLAY_LABELS = {"diverging": "signed colours (blue − / orange +)", "abs": "absolute value",
                  "clip": "clipped to 0–255 (classic photo filter)"}
CUSTOM = "custom"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
LEARN_TARGET_TYPED = "the kernel in the grid"  # also a value of the URL table's "hidden"
DEFAULT_PRESET = "top sobel"


# State ------------------------------------------------------------------------------------------

def init_state() -> None:
    """Defaults first, then a shared link's values on the session's first visit of this page."""
    for p in urlstate.table(PAGE):
        if p.kind == "cells":
            for i, text in enumerate(kernels.kernel_to_text(kernels.PRESETS[DEFAULT_PRESET])):
                state.restore(state.K_CELL.format(i), text)
        else:
            state.restore(p.key, p.default)
    state.restore(state.K_SOURCE, "sample")
    if not st.session_state.get(state.K_URL_LOADED):
        st.session_state[state.K_URL_LOADED] = True
        problems = urlstate.load(PAGE)
        if "preset" in st.query_params and "k" not in st.query_params:
            _fill_cells(st.session_state[state.K_PRESET])
        for problem in problems:
            st.warning(problem)


def _fill_cells(preset: str) -> None:
    if preset in kernels.PRESETS:
        texts = kernels.PRESET_TEXT.get(preset) or kernels.kernel_to_text(kernels.PRESETS[preset])
        for i, text in enumerate(texts):
            state.set_value(state.K_CELL.format(i), text)


def _on_preset() -> None:
    _fill_cells(st.session_state[state.K_PRESET])


def _on_cell() -> None:
    """Editing a cell makes the kernel custom, unless the grid still equals the chosen preset."""
    preset = st.session_state.get(state.K_PRESET)
    try:
        kernel = kernels.parse_kernel([st.session_state[state.K_CELL.format(i)] for i in range(9)])
    except kernels.KernelError:
        kernel = None
    if preset in kernels.PRESETS and (kernel is None
                                      or not np.allclose(kernel, kernels.PRESETS[preset])):
        state.set_value(state.K_PRESET, CUSTOM)


def widget_keys() -> list[str]:
    keys = [p.key for p in urlstate.table(PAGE) if p.kind != "cells"]
    return keys + [state.K_CELL.format(i) for i in range(9)] + [state.K_SOURCE]


# Photo ------------------------------------------------------------------------------------------

def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # shared between sessions, so nobody may change it in place
    return a


# Read-only arrays are safe to share, and cache_resource hands them out without the copy that
# cache_data makes on every rerun (a 12-megapixel photo is 36 MB).
@st.cache_resource(show_spinner=False, max_entries=16)
def _sample(name: str) -> np.ndarray:
    return _frozen(load_sample(name))


@st.cache_resource(show_spinner=False, max_entries=8)
def _decode_upload(data: bytes) -> np.ndarray:
    # Cached by content, so a rerun does not decode the same upload again.
    return _frozen(load_image(data))


def image_source() -> tuple[np.ndarray, str]:
    """Draw the source controls; return the current photo and its name (previous kept on error)."""
    source = st.radio("Photo", ["sample", "upload", "webcam"], key=state.K_SOURCE, horizontal=True,
                      format_func={"sample": "Sample photo", "upload": "Upload",
                                   "webcam": "Webcam"}.get)
    if source == "sample":
        name = st.selectbox("Sample", list(SAMPLES), key=state.K_SAMPLE,
                            format_func=lambda n: SAMPLES[n][1])
        _set_image(_sample(name), SAMPLES[name][1])
    else:
        if source == "upload":
            file = st.file_uploader("PNG, JPEG, WebP, GIF, BMP or TIFF", type=UPLOAD_TYPES,
                                    key=state.K_UPLOAD)
        else:
            file = st.camera_input("Take a photo", key=state.K_CAMERA)
        if file is not None:
            data = file.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            if digest != st.session_state.get(state.K_UPLOAD_DIGEST):
                try:
                    _set_image(_decode_upload(data), getattr(file, "name", "webcam photo"))
                    st.session_state[state.K_IMAGE_ERROR] = None
                except ImageError as exc:
                    st.session_state[state.K_IMAGE_ERROR] = f"{exc} The previous photo is still shown."
                st.session_state[state.K_UPLOAD_DIGEST] = digest
        if st.session_state.get(state.K_IMAGE_ERROR):
            st.error(st.session_state[state.K_IMAGE_ERROR])
        if state.K_IMAGE not in st.session_state:
            _set_image(_sample("chelsea"), SAMPLES["chelsea"][1])
    return st.session_state[state.K_IMAGE], st.session_state[state.K_IMAGE_NAME]


def _set_image(image: np.ndarray, name: str) -> None:
    st.session_state[state.K_IMAGE] = image
    st.session_state[state.K_IMAGE_NAME] = name


def photo_key(image: np.ndarray, name: str) -> str:
    """A short key for a photo (its name, shape and a hash of a sparse sample of its pixels): the
    caches below are keyed by it instead of hashing megapixels on every rerun."""
    return f"{name}:{image.shape}:{hashlib.md5(image[::37, ::37].tobytes()).hexdigest()}"


@st.cache_resource(show_spinner=False, max_entries=16)
def working_copy(image_key: str, _image: np.ndarray, side: int, grey: bool) -> np.ndarray:
    """The photo the kernel runs on: shrunk to `side` (0 = full size), grey if asked; read-only."""
    img = resize_to_fit(_image, side) if side else _image
    return _frozen(np.array(to_grey(img) if grey else img))


# Kernel grid and options ------------------------------------------------------------------------

def kernel_editor() -> tuple[np.ndarray, str | None]:
    """Preset picker and the 3×3 grid. Returns the kernel to use and an error sentence (or None)."""
    st.selectbox("Preset", list(kernels.PRESETS) + [CUSTOM], key=state.K_PRESET,
                 on_change=_on_preset)
    for row in range(3):
        cols = st.columns(3)
        for col in range(3):
            i = row * 3 + col
            cols[col].text_input(f"row {row + 1}, column {col + 1}", key=state.K_CELL.format(i),
                                 on_change=_on_cell, label_visibility="collapsed")
    cells = [st.session_state[state.K_CELL.format(i)] for i in range(9)]
    try:
        kernel = kernels.parse_kernel(cells)
        st.session_state[state.K_LAST_KERNEL] = kernel
        return kernel, None
    except kernels.KernelError as exc:
        last = st.session_state.get(state.K_LAST_KERNEL, kernels.PRESETS[DEFAULT_PRESET])
        return last, f"{exc} The last valid kernel is still applied."


def output_options() -> tuple[bool, str, bool, str, int]:
    """(grey, display mode, ReLU, border, working size) as chosen."""
    grey = st.toggle("Grey (one channel)", key=state.K_GREY,
                     help="Off: the kernel runs on the red, green and blue channels separately.")
    display = st.selectbox("Show the response as", list(DISPLAY_LABELS), key=state.K_DISPLAY,
                           format_func=DISPLAY_LABELS.get)
    relu = st.toggle("ReLU: max(0, x)", key=state.K_RELU,
                     help="Negative responses become 0, as after a ReLU in a network.")
    border = st.radio("Border", kernels.BORDERS, key=state.K_BORDER, horizontal=True,
                      help="; ".join(f"{b}: {t}" for b, t in kernels.BORDER_HELP.items()))
    work = st.selectbox("Working size", list(WORK_SIZES), key=state.K_WORKSIZE,
                        format_func=WORK_SIZES.get,
                        help="The photo is shrunk to this longest side before the kernel runs.")
    return grey, display, relu, border, work
