"""The Explorer's "Inside" tab: the kernels the run's first layer learned (one opens in the Kernel
Playground), and what each stage of the network makes of one image — its feature maps, most active
first, with their shapes; a click enlarges a map over the image.

engine.inside computes (first_layer_kernels, feature_maps, and the small pictures' numbers); the
figures are ui/explore_inside_figs.py's.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import streamlit as st

from engine import inside, interpret
from engine.data import resize_crop
from engine.images import ImageError, encode_jpeg, load_image
from engine.models import Checkpoint, preprocess_image
from engine.runs import Run
from ui import state, urlstate
from ui.explore_common import checkpoint, md
from ui.explore_inside_figs import mosaic_figure
from ui.explore_predict import UPLOAD_TYPES
from ui.kernels_figs import matrix_figure

PAGE = "explore"
#: The tab's widgets (their values last across pages, ui.state.remember).
WIDGETS = [state.E_IN_SOURCE, state.E_IN_ITEM, state.E_IN_KVIEW, state.E_IN_KERNEL, state.E_IN_TOP,
           state.E_IN_STAGE, state.E_IN_CHANNEL, state.E_IN_ALPHA]
TILE = 28          # longest side of one feature map in a stage's picture, pixels of the map
SHOW_SIDE = 320    # side of the enlarged map over the image, screen pixels
KERNEL_COLS = 16   # kernels per row in the kernel picture


def init_state() -> None:
    """Defaults of the tab's widgets (the URL table's rows), before anything is drawn."""
    for p in urlstate.table(PAGE):
        if p.key in WIDGETS:
            state.restore(p.key, p.default)


def _height(mosaic: np.ndarray, width: int) -> int:
    """Pixels of height that show a mosaic about `width` pixels wide (within 90…480)."""
    return int(min(480, max(90, width * mosaic.shape[0] / max(mosaic.shape[1], 1)))) + 8


def _clamp(key: str, hi: int) -> int:
    """A widget's index kept within 0…hi before the widget is drawn (a link or another run may
    have left a larger one)."""
    value = int(state.get(key, 0))
    if not 0 <= value <= hi:
        value = min(max(value, 0), max(hi, 0))
        state.set_value(key, value)
    return value


def _image(run: Run) -> tuple[np.ndarray | None, str, str]:
    """(uint8 photo, its name, a key naming it for the cache), or (None, "", "") when none yet."""
    left, right = st.columns(2)
    source = left.radio("Image", ["valid", "upload"], key=state.E_IN_SOURCE, horizontal=True,
                        format_func={"valid": "a validation image", "upload": "upload"}.get)
    if source == "valid":
        if not len(run.items):
            st.write("This run has no validation images; upload a photo instead.")
            return None, "", ""
        _clamp(state.E_IN_ITEM, len(run.items) - 1)
        i = int(right.number_input("Validation image number", 0, len(run.items) - 1,
                                   key=state.E_IN_ITEM))
        path = run.items[i][0]
        try:
            return load_image(path), Path(path).name, f"valid:{path}"
        except (ImageError, OSError):
            st.error("That validation image has moved (perhaps cleaned); pick another number.")
            return None, "", ""
    file = st.file_uploader("PNG, JPEG, WebP, GIF, BMP or TIFF", type=UPLOAD_TYPES,
                            key=state.E_IN_UPLOAD)
    if file is None:
        return None, "", ""
    data = file.getvalue()
    try:
        return load_image(data), file.name, "upload:" + hashlib.sha256(data).hexdigest()
    except ImageError as exc:
        st.error(str(exc))
        return None, "", ""


# Kernels ----------------------------------------------------------------------------------------

def _on_click(fig_key: str, target: str, stage: int | None = None) -> None:
    """A click on a tile picks it: a kernel, or a stage's channel (and that stage)."""
    points = ((st.session_state.get(fig_key) or {}).get("selection") or {}).get("points") or []
    if points and points[0].get("customdata") is not None:
        state.set_value(target, int(points[0]["customdata"]))
        if stage is not None:
            state.set_value(state.E_IN_STAGE, stage)


def playground_link(cells: list[str]) -> str:
    """A Kernel Playground link with this kernel in the grid, on the grey photo."""
    base = (st.context.url or "").split("?")[0].rstrip("/")
    base = base[: base.rfind("/")] if "/" in base.split("//", 1)[-1] else base
    query = urlencode({"preset": "custom", "k": ",".join(cells), "grey": "1",
                       "display": "diverging"}, safe="/,")
    return f"{base}/kernels?{query}"


def kernels_part(ckpt: Checkpoint) -> None:
    """The first layer's kernels as small pictures; the picked one in numbers and in the playground."""
    weights = inside.first_layer_kernels(ckpt.model)          # (out, in, kh, kw)
    n_out, n_in, kh, kw = weights.shape
    st.subheader("What the first layer learned")
    st.write(f"The first layer is a bank of {n_out} kernels of {kh}×{kw} weights, each with one "
             f"slice per colour channel ({n_in} in all). Nobody wrote these numbers: they started "
             "random (or from ImageNet) and gradient descent shaped them. Many turn into edge "
             "and colour detectors, like the hand-made kernels of the Kernel Playground.")
    view = st.radio("Show each kernel", ["rgb", "channels"], key=state.E_IN_KVIEW, horizontal=True,
                    format_func={"rgb": "as one colour picture",
                                 "channels": "as its red, green and blue slices"}.get)
    picked = _clamp(state.E_IN_KERNEL, n_out - 1)
    scaled = [inside.unit_scale(k) for k in weights]             # each kernel on its own scale
    if view == "rgb":
        tiles, hw, kind = [k.transpose(1, 2, 0) for k in scaled], (kh, kw), "rgb"
    else:   # three slices side by side, a NaN column between them; −1…1 for the blue-orange map
        tiles = [inside.tile_grid(list(2 * k - 1), 3) for k in scaled]
        hw, kind = tiles[0].shape, "diverging"
    cols = KERNEL_COLS if view == "rgb" else KERNEL_COLS // 2
    mosaic = inside.tile_grid(tiles, cols, gap=1 if view == "rgb" else 2)
    fig = mosaic_figure(mosaic, hw, 1 if view == "rgb" else 2, cols, list(range(n_out)),
                        [f"kernel {i}" for i in range(n_out)], picked=picked, kind=kind,
                        height=_height(mosaic, 700))
    key = state.E_IN_KERNEL_FIG
    st.plotly_chart(fig, key=key, on_select=functools.partial(_on_click, key, state.E_IN_KERNEL),
                    selection_mode="points", config={"displayModeBar": False})
    st.caption("Each kernel is drawn on its own scale: mid grey (or white) is 0, brighter or orange "
               "is a positive weight, darker or blue a negative one. Click one to look at it.")
    picked = int(st.columns(3)[0].number_input("Kernel number", 0, n_out - 1, key=state.E_IN_KERNEL))
    kernel_detail(ckpt, weights[picked], picked)


def kernel_detail(ckpt: Checkpoint, kernel: np.ndarray, index: int) -> None:
    """One kernel's slices in numbers, the 3×3 kernel it is on a grey photo, and the link."""
    n_in, kh, kw = kernel.shape
    cols = st.columns(n_in + 1)
    for c, name in enumerate(("red", "green", "blue")[:n_in]):
        cols[c].plotly_chart(matrix_figure(kernel[c], title=f"{name} slice", fmt=".2f",
                                           height=120 + 22 * kh),
                             key=state.E_IN_SLICE_FIG.format(name))
    grey = inside.grey_kernel(kernel, ckpt.meta.get("std"))
    centre = inside.centre3(grey)
    cols[n_in].plotly_chart(matrix_figure(centre, title="3×3 for the playground", fmt=".3g",
                                          height=180), key=state.E_IN_SLICE_FIG.format("grey"))
    cut = "" if (kh, kw) == (3, 3) else (
        f" The playground takes 3×3 kernels, so it gets the **3×3 centre** of this {kh}×{kw} "
        "kernel: the outer ring of weights is left out, and the result is only close to what "
        "the network computes.")
    st.markdown(f"On a grey photo a pixel's red, green and blue are the same number, so kernel "
                f"{index}'s three slices add up to one kernel (each weighted by 1 ÷ the spread the "
                f"run divides that channel by).{cut}")
    st.link_button("Open in the Kernel Playground", playground_link(inside.playground_cells(centre)),
                   key=state.E_IN_PLAY, icon=":material/open_in_new:")


# Feature maps -----------------------------------------------------------------------------------

def _maps(run: Run, ckpt: Checkpoint, image: np.ndarray, key: str) -> list[tuple[str, np.ndarray]]:
    """The feature maps of image, kept for the session (a rerun for another widget reuses them)."""
    held = st.session_state.get(state.E_IN_MAPS)
    if held is None or held[:2] != (run.info.id, key):
        meta = ckpt.meta
        x = preprocess_image(image, int(meta["size"]), meta["mean"], meta["std"])[0]
        held = (run.info.id, key, inside.feature_maps(ckpt.model, x))
        st.session_state[state.E_IN_MAPS] = held
    return held[2]


def maps_part(maps: list[tuple[str, np.ndarray]]) -> None:
    """Each stage's most active channels as a grid of small grey pictures, with the stage's shape."""
    st.subheader("What each stage makes of the image")
    st.write("Every stage turns its input into a stack of feature maps: one picture per channel, "
             "bright where that channel's pattern is found. Early stages keep many pixels and "
             "respond to edges and colours; later ones have fewer pixels and more channels, and "
             "respond to textures and parts. Click a map to enlarge it over the image.")
    top = int(st.select_slider("Maps shown per stage (most active first)", [4, 8, 16],
                               key=state.E_IN_TOP))
    for i, (name, fmap) in enumerate(maps):
        c, h, w = fmap.shape
        order = inside.most_active(fmap, top)
        tiles = [inside.unit_scale(inside.shrink(fmap[j], TILE), symmetric=False) for j in order]
        cols = min(len(tiles), 8)
        mosaic = inside.tile_grid(tiles, cols)
        left, right = st.columns([1, 3])
        left.markdown(f"**{i + 1}. {md(name)}**  \n{c} × {h} × {w}")
        left.caption(f"{c} channels of {h}×{w} pixels (C × H × W)")
        key = state.E_IN_FMAP_FIG.format(i)
        right.plotly_chart(
            mosaic_figure(mosaic, tiles[0].shape, 1, cols, [int(j) for j in order],
                          [f"channel {j}" for j in order], kind="grey", height=_height(mosaic, 520)),
            key=key, on_select=functools.partial(_on_click, key, state.E_IN_CHANNEL, i),
            selection_mode="points", config={"displayModeBar": False})


def enlarged_part(image: np.ndarray, maps: list[tuple[str, np.ndarray]]) -> None:
    """The picked channel of the picked stage, enlarged and laid over the image."""
    st.subheader("One map, enlarged over the image")
    stage = _clamp(state.E_IN_STAGE, len(maps) - 1)
    c1, c2, c3 = st.columns(3)
    stage = int(c1.selectbox("Stage", list(range(len(maps))), key=state.E_IN_STAGE,
                             format_func=lambda i: f"{i + 1}. {maps[i][0]}"))
    fmap = maps[stage][1]
    _clamp(state.E_IN_CHANNEL, len(fmap) - 1)
    channel = int(c2.number_input("Channel", 0, len(fmap) - 1, key=state.E_IN_CHANNEL))
    alpha = float(c3.slider("Opacity of the map", 0.0, 1.0, step=0.05, key=state.E_IN_ALPHA))
    plane = inside.unit_scale(fmap[channel], symmetric=False)
    square = resize_crop(image, SHOW_SIDE)       # the centre square, as the model saw it
    left, right = st.columns(2)
    left.image(encode_jpeg(interpret.overlay(square, plane, alpha=1.0, cmap="viridis")),
               width=SHOW_SIDE,
               caption=f"channel {channel} of “{maps[stage][0]}”: {fmap.shape[1]}×{fmap.shape[2]} "
                       f"pixels, stretched to {SHOW_SIDE}×{SHOW_SIDE}")
    right.image(encode_jpeg(interpret.overlay(square, plane, alpha=alpha, cmap="viridis")),
                width=SHOW_SIDE, caption="over the image (bright yellow = most active)")
    lo, hi = float(fmap[channel].min()), float(fmap[channel].max())
    st.caption(f"This channel's numbers run from {lo:.3g} to {hi:.3g}; the picture stretches them "
               "from dark to bright. A map has fewer pixels than the image because strided "
               "convolutions and pooling shrink it, so each of its pixels covers a patch of the "
               "photo.")


def inside_section(run: Run) -> None:
    """The whole tab."""
    st.write("A look inside the trained network: the kernels of its first layer, and what every "
             "stage computes from one image, from the first layer to the last before the head.")
    ckpt = checkpoint(run)
    kernels_part(ckpt)
    image, name, key = _image(run)
    if image is None:
        return
    try:
        maps = _maps(run, ckpt, image, key)
    except (inside.InsideError, ImageError, ValueError) as exc:
        st.error(f"The feature maps could not be computed: {exc}")
        return
    size = int(ckpt.meta["size"])
    pic, words = st.columns([1, 5])
    pic.image(encode_jpeg(resize_crop(image, size)), width=96)   # as the network sees it
    words.caption(f"{md(name)}: the network sees its centre square at {size}×{size} pixels, "
                  "preprocessed exactly as the validation images were.")
    maps_part(maps)
    enlarged_part(image, maps)


__all__ = ["WIDGETS", "init_state", "inside_section", "playground_link"]
