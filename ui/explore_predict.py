"""The Explorer's "Predict" tab: the saved model predicting one photo (a validation image, an
upload or the webcam) on the CPU, with its Grad-CAM and the class probabilities."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import streamlit as st

from engine import interpret
from engine.images import ImageError, encode_jpeg, load_image, resize_to_fit
from engine.runs import Run
from ui import state
from ui.explore_common import ENGINE_ERRORS, checkpoint, md
from ui.explore_figs import prob_figure

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]


@st.cache_data(show_spinner=False, max_entries=8)
def _decode(data: bytes) -> np.ndarray:
    return load_image(data)


def _photo(run: Run, source: str) -> tuple[np.ndarray | None, str]:
    """(uint8 image, name) from the chosen source, or (None, "") when there is none yet (a
    sentence has then been shown where needed)."""
    if source == "valid":
        n = len(run.items)
        if n == 0:
            st.write("This run has no validation images.")
            return None, ""
        i = int(st.number_input("Validation image number", 0, n - 1, key=state.E_PRED_ITEM))
        try:
            return load_image(run.items[i][0]), Path(run.items[i][0]).name
        except (ImageError, OSError):
            st.error("That validation image has moved (perhaps cleaned); pick another number.")
            return None, ""
    file = (st.file_uploader("PNG, JPEG, WebP, GIF, BMP or TIFF", type=UPLOAD_TYPES,
                             key=state.E_UPLOAD) if source == "upload"
            else st.camera_input("Take a photo", key=state.E_CAMERA))
    if file is None:
        return None, ""
    try:
        return _decode(file.getvalue()), getattr(file, "name", "webcam photo")
    except ImageError as exc:
        st.error(str(exc))
        return None, ""


def predict_section(run: Run) -> None:
    """Pick a photo, predict it, show the Grad-CAM of the predicted class and the probabilities."""
    st.write("This is the model in production: a saved file, the class order it was trained with, "
             "and the same preprocessing as the validation images, predicting one photo on the CPU.")
    source = st.radio("Photo", ["valid", "upload", "webcam"], key=state.E_PRED_SOURCE, horizontal=True,
                      format_func={"valid": "a validation image", "upload": "upload",
                                   "webcam": "webcam"}.get)
    image, name = _photo(run, source)
    if image is None:
        return
    try:
        ckpt = checkpoint(run)
        t0 = time.perf_counter()
        cls_name, idx, probs = ckpt.predict(image, device="cpu")
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        cam = interpret.cam_map(ckpt, image, idx)   # timed alone: the overlay is only drawing
        cam_seconds = time.perf_counter() - t1
        over = interpret.cam_overlay(ckpt, image, idx, cam=cam, alpha=float(state.get(state.E_CAM_ALPHA)),
                                     cmap=state.get(state.E_CMAP))
    except ENGINE_ERRORS + (ValueError,) as exc:
        st.error(f"The prediction failed: {exc}")
        return
    left, right = st.columns([1, 2])
    with left:
        st.image(encode_jpeg(resize_to_fit(image, 320)), caption=None, width=260)
        st.image(over, width=260)
        st.caption(f"Grad-CAM for {md(cls_name)} ({cam_seconds * 1000:.0f} ms)")
    with right:
        st.markdown(f"### {md(cls_name)} — {probs[idx]:.1%}")
        st.caption(f"{md(name)} · predicted in **{seconds * 1000:.1f} ms** on the CPU "
                   f"(resize, normalise, one forward pass) at {int(ckpt.meta['size'])} px.")
        st.plotly_chart(prob_figure(run.classes, probs), key=state.E_PROBS,
                        config={"displayModeBar": False})
