"""The Kernel Playground's "Photo as numbers" tab: the photo as the array a network is given — its
shape (H, W, 3), its type uint8, its rank, its smallest and largest value, and the raw numbers of a
small crop in each colour channel."""
from __future__ import annotations

import numpy as np
import streamlit as st

from ui import kernels_figs, state

CROP_SIDES = (3, 4, 5, 6, 8)
CHANNELS = ("red", "green", "blue")


def crop_at(image: np.ndarray, x: int, y: int, side: int) -> tuple[np.ndarray, int, int]:
    """(crop, x0, y0): the side × side window of image whose top-left corner is near (x, y),
    moved inside the picture when (x, y) is close to its right or bottom edge."""
    h, w = image.shape[:2]
    x0 = min(max(int(x), 0), max(w - side, 0))
    y0 = min(max(int(y), 0), max(h - side, 0))
    return image[y0:y0 + side, x0:x0 + side], x0, y0


def tensor_section(photo: np.ndarray, colour_work: np.ndarray, work: np.ndarray) -> None:
    """photo: the photo as loaded; colour_work: it at the working size, in colour; work: what the
    kernel runs on (grey when “Grey” is on)."""
    h, w = photo.shape[:2]
    top, bottom = st.columns(2), st.columns(2)   # two to a row: a shape needs the room
    top[0].metric("shape", str(tuple(int(v) for v in photo.shape)))
    top[1].metric("dtype", str(photo.dtype))
    bottom[0].metric("rank (ndim)", str(photo.ndim))
    bottom[1].metric("min … max", f"{int(photo.min())} … {int(photo.max())}")
    st.write(f"To a program this photo is a block of {photo.size:,} whole numbers: {h} rows, each "
             f"of {w} pixels, each pixel three numbers for red, green and blue. “uint8” means "
             "every number is an unsigned 8-bit integer, so it lies between 0 (none of that "
             "colour) and 255 (all of it). Three axes — rows, columns, channels — make it a "
             "rank-3 tensor.")
    st.info(f"Image programs say **width × height**: this photo is {w}×{h}. Arrays count the "
            f"other way round, **(height, width)**: rows first, because a row is what you index "
            f"first — `img[y, x]`, here shape ({h}, {w}, 3). The same photo, two habits.")
    if work.ndim == 2:
        st.caption(f"With “Grey” on, the kernel runs on a copy with one number per pixel: shape "
                   f"{tuple(work.shape)}, rank 2 (each pixel is 0.299·red + 0.587·green + "
                   "0.114·blue).")
    side = int(st.select_slider("Crop side (pixels)", CROP_SIDES, key=state.K_CROP))
    x, y = int(state.get(state.K_PX, 0)), int(state.get(state.K_PY, 0))
    crop, x0, y0 = crop_at(colour_work, x, y, side)
    ch, cw = colour_work.shape[:2]
    st.write(f"The raw numbers of the {side}×{side} crop starting at the walkthrough pixel "
             f"(x={x0}, y={y0}) of the {cw}×{ch} working copy, one table per channel c: "
             f"`img[{y0}:{y0 + side}, {x0}:{x0 + side}, c]` — rows (y) first, then columns (x).")
    cols = st.columns(3)
    for i, (col, name) in enumerate(zip(cols, CHANNELS)):
        values = crop[..., i] if crop.ndim == 3 else crop
        col.plotly_chart(kernels_figs.matrix_figure(values, title=f"{name} (c = {i})", fmt=".0f",
                                                    grey=True, height=60 + 40 * side),
                         key=state.K_TENSOR_FIG.format(name))
    st.caption("Pick another place with the pixel walkthrough (type x and y, or click the enlarged "
               "view). A kernel only ever sees numbers like these: nine of them at a time.")


__all__ = ["CROP_SIDES", "crop_at", "tensor_section"]
