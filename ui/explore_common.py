"""What the Explorer's sections share: the session's model, thumbnails, Grad-CAM tiles and safe
markdown for names the user controls."""
from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np
import streamlit as st

from engine import interpret
from engine.cleaner import CleanError
from engine.data import DataError
from engine.images import ImageError, encode_jpeg, load_image, resize_to_fit
from engine.models import Checkpoint, CheckpointError
from engine.runs import Run, RunError
from ui import state

THUMB = 168                 # side of a thumbnail on the page, pixels
GRID = 4                    # tiles per row
# What a section catches and shows as one sentence (each carries a message meant for the user).
ENGINE_ERRORS = (RunError, CheckpointError, ImageError, CleanError, interpret.InterpretError,
                 DataError, OSError)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:~$=&])")


def md(text: object) -> str:
    """Text (file or class names) safe inside st.markdown: every markdown character escaped, so a
    name such as <b>x</b>, **x** or &amp; shows exactly as written."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def checkpoint(run: Run) -> Checkpoint:
    """The run's model, loaded once per session (a model is never shared between sessions)."""
    held = st.session_state.get(state.E_MODEL)
    if held is None or held[0] != run.info.id:
        held = (run.info.id, run.load_model())
        st.session_state[state.E_MODEL] = held
    return held[1]


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumb(path: str, mtime: float, side: int) -> bytes:
    return encode_jpeg(resize_to_fit(load_image(path), side))


def thumb(path: str, side: int = THUMB) -> bytes | None:
    """A small JPEG of the file, or None when it has moved (cleaned) or cannot be read."""
    try:
        return _thumb(path, os.path.getmtime(path), side)
    except (OSError, ImageError):
        return None


def cam_picture(run: Run, path: str, class_idx: int) -> np.ndarray:
    """The image as the model saw it (centre square), with the Grad-CAM map of class_idx on top.
    Maps are kept for the session, so moving the opacity slider does not recompute them."""
    ckpt = checkpoint(run)
    image = load_image(path)
    key = (run.info.id, path, class_idx)
    cams = st.session_state.setdefault(state.E_CAMS, {})
    if key not in cams:
        cams[key] = interpret.cam_map(ckpt, image, class_idx)
    return interpret.cam_overlay(ckpt, image, class_idx, cam=cams[key],
                                 alpha=float(state.get(state.E_CAM_ALPHA)), cmap=state.get(state.E_CMAP))


def tile(run: Run, i: int, *, cam_toggle: bool = False) -> None:
    """One validation image with prediction / actual / loss / probability."""
    path, _ = run.items[i]
    pred = int(run.probs[i].argmax())
    actual = int(run.targets[i])
    show_cam = cam_toggle and st.toggle("Grad-CAM", key=state.E_CAM_TILE.format(i),
                                        help="Colour where the evidence for the predicted class lies.")
    picture = None
    if show_cam:
        try:
            picture = cam_picture(run, path, pred)
        except ENGINE_ERRORS as exc:
            st.error(f"Grad-CAM could not be drawn: {exc}")
    if picture is None:
        picture = thumb(path)
    if picture is None:
        st.caption("(file moved or unreadable — perhaps cleaned)")
    else:
        st.image(picture, width=THUMB)
    mark = "✓" if pred == actual else "✗"
    st.caption(f"{mark} predicted **{md(run.classes[pred])}** · actual **{md(run.classes[actual])}**  \n"
               f"loss {max(float(run.losses[i]), 0.0):.3f} · probability {run.probs[i, pred]:.2f}")


def grid(run: Run, indices: Sequence[int] | np.ndarray, *, cam_toggle: bool = False) -> None:
    """Tiles of the given validation items, GRID to a row."""
    for start in range(0, len(indices), GRID):
        cols = st.columns(GRID)
        for col, i in zip(cols, indices[start:start + GRID]):
            with col:
                tile(run, int(i), cam_toggle=cam_toggle)
