"""Kernel Playground: what a 3×3 kernel does to a photo, one pixel at a time, in layers, and learned.

Thin page: widgets return plain values, engine.kernels computes, ui.figures draws.
"""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from engine import kernels as K
from engine.images import ImageError, encode_jpeg, load_image, resize_to_fit, to_grey
from engine.samples import SAMPLES, load_sample
from ui import figures
from ui.nav import ensure_app_navigation
from ui import state as S
from ui import urlstate

PAGE = "kernels"
DISPLAY_SIDE = 640          # longest side of a picture drawn on the page, in pixels
WORK_SIZES = {0: "full size", 2048: "2048 px", 1024: "1024 px", 512: "512 px"}
DISPLAY_LABELS = {"diverging": "signed colours (blue − / orange +)", "abs": "absolute value",
                  "clip": "clipped to 0–255 (classic photo filter)"}
CUSTOM = "custom"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
LEARN_TARGET_TYPED = "the kernel in the grid"  # also a value of the URL table's "hidden"


# ------------------------------------------------------------------------------------------------
# State

def init_state() -> None:
    """Defaults first, then a shared link's values on the session's first visit of this page."""
    for p in urlstate.table(PAGE):
        if p.kind == "cells":
            for i, text in enumerate(K.kernel_to_text(K.PRESETS["top sobel"])):
                S.restore(S.K_CELL.format(i), text)
        else:
            S.restore(p.key, p.default)
    S.restore(S.K_SOURCE, "sample")
    if not st.session_state.get(S.K_URL_LOADED):
        st.session_state[S.K_URL_LOADED] = True
        problems = urlstate.load(PAGE)
        if "preset" in st.query_params and "k" not in st.query_params:
            _fill_cells(st.session_state[S.K_PRESET])
        for problem in problems:
            st.warning(problem)


def _fill_cells(preset: str) -> None:
    if preset in K.PRESETS:
        texts = K.PRESET_TEXT.get(preset) or K.kernel_to_text(K.PRESETS[preset])
        for i, text in enumerate(texts):
            S.set_value(S.K_CELL.format(i), text)


def _on_preset() -> None:
    _fill_cells(st.session_state[S.K_PRESET])


def _on_cell() -> None:
    """Editing a cell makes the kernel custom, unless the grid still equals the chosen preset."""
    preset = st.session_state.get(S.K_PRESET)
    try:
        kernel = K.parse_kernel([st.session_state[S.K_CELL.format(i)] for i in range(9)])
    except K.KernelError:
        kernel = None
    if preset in K.PRESETS and (kernel is None or not np.allclose(kernel, K.PRESETS[preset])):
        S.set_value(S.K_PRESET, CUSTOM)


def widget_keys() -> list[str]:
    keys = [p.key for p in urlstate.table(PAGE) if p.kind != "cells"]
    return keys + [S.K_CELL.format(i) for i in range(9)] + [S.K_SOURCE]


# ------------------------------------------------------------------------------------------------
# Image

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
    source = st.radio("Photo", ["sample", "upload", "webcam"], key=S.K_SOURCE, horizontal=True,
                      format_func={"sample": "Sample photo", "upload": "Upload",
                                   "webcam": "Webcam"}.get)
    if source == "sample":
        name = st.selectbox("Sample", list(SAMPLES), key=S.K_SAMPLE,
                            format_func=lambda n: SAMPLES[n][1])
        _set_image(_sample(name), SAMPLES[name][1])
    else:
        if source == "upload":
            file = st.file_uploader("PNG, JPEG, WebP, GIF, BMP or TIFF", type=UPLOAD_TYPES,
                                    key="kernels.upload")
        else:
            file = st.camera_input("Take a photo", key="kernels.camera")
        if file is not None:
            data = file.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            if digest != st.session_state.get(S.K_UPLOAD_DIGEST):
                try:
                    _set_image(_decode_upload(data), getattr(file, "name", "webcam photo"))
                    st.session_state[S.K_IMAGE_ERROR] = None
                except ImageError as exc:
                    st.session_state[S.K_IMAGE_ERROR] = f"{exc} The previous photo is still shown."
                st.session_state[S.K_UPLOAD_DIGEST] = digest
        if st.session_state.get(S.K_IMAGE_ERROR):
            st.error(st.session_state[S.K_IMAGE_ERROR])
        if S.K_IMAGE not in st.session_state:
            _set_image(_sample("chelsea"), SAMPLES["chelsea"][1])
    return st.session_state[S.K_IMAGE], st.session_state[S.K_IMAGE_NAME]


def _set_image(image: np.ndarray, name: str) -> None:
    st.session_state[S.K_IMAGE] = image
    st.session_state[S.K_IMAGE_NAME] = name


@st.cache_resource(show_spinner=False, max_entries=16)
def _working_copy(image_key: str, _image: np.ndarray, side: int, grey: bool) -> np.ndarray:
    img = resize_to_fit(_image, side) if side else _image
    return _frozen(np.array(to_grey(img) if grey else img))


# ------------------------------------------------------------------------------------------------
# Kernel grid

def kernel_editor() -> tuple[np.ndarray, str | None]:
    """Preset picker and the 3×3 grid. Returns the kernel to use and an error sentence (or None)."""
    st.selectbox("Preset", list(K.PRESETS) + [CUSTOM], key=S.K_PRESET, on_change=_on_preset)
    for row in range(3):
        cols = st.columns(3)
        for col in range(3):
            i = row * 3 + col
            cols[col].text_input(f"row {row + 1}, column {col + 1}", key=S.K_CELL.format(i),
                                 on_change=_on_cell, label_visibility="collapsed")
    cells = [st.session_state[S.K_CELL.format(i)] for i in range(9)]
    try:
        kernel = K.parse_kernel(cells)
        st.session_state[S.K_LAST_KERNEL] = kernel
        return kernel, None
    except K.KernelError as exc:
        last = st.session_state.get(S.K_LAST_KERNEL, K.PRESETS["top sobel"])
        return last, f"{exc} The last valid kernel is still applied."


def output_options() -> tuple[bool, str, bool, str, int]:
    grey = st.toggle("Grey (one channel)", key=S.K_GREY,
                     help="Off: the kernel runs on the red, green and blue channels separately.")
    display = st.selectbox("Show the response as", list(DISPLAY_LABELS), key=S.K_DISPLAY,
                           format_func=DISPLAY_LABELS.get)
    relu = st.toggle("ReLU: max(0, x)", key=S.K_RELU,
                     help="Negative responses become 0, as after a ReLU in a network.")
    border = st.radio("Border", K.BORDERS, key=S.K_BORDER, horizontal=True,
                      help="; ".join(f"{b}: {t}" for b, t in K.BORDER_HELP.items()))
    work = st.selectbox("Working size", list(WORK_SIZES), key=S.K_WORKSIZE,
                        format_func=WORK_SIZES.get,
                        help="The photo is shrunk to this longest side before the kernel runs.")
    return grey, display, relu, border, work


# ------------------------------------------------------------------------------------------------
# Drawing helpers

def show(picture: np.ndarray, caption: str, cache_key: str | None = None) -> None:
    """Encode only a display-sized copy (st.image would re-encode the full array every run).

    With a cache_key (the input photo), the encoded copy is reused across reruns.
    """
    data = _display_jpeg(cache_key, picture) if cache_key else _encode_for_display(picture)
    st.image(data, caption=caption, width="stretch")


def _encode_for_display(picture: np.ndarray) -> bytes:
    return encode_jpeg(resize_to_fit(picture, DISPLAY_SIDE))


@st.cache_data(show_spinner=False, max_entries=16)
def _display_jpeg(cache_key: str, _picture: np.ndarray) -> bytes:
    return _encode_for_display(_picture)


def render(response: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    scale = K.response_scale(response, mode)
    small = resize_to_fit(response, DISPLAY_SIDE)
    rendered = K.render_response(small, mode, scale=scale)
    return rendered.image, rendered.note


# ------------------------------------------------------------------------------------------------
# Sections

def _on_zoom_click() -> None:
    """A click on the enlarged view picks that pixel (runs before the rerun, so widgets follow)."""
    points = st.session_state["kernels.zoom"]["selection"]["points"]
    if points:
        S.set_value(S.K_PX, int(points[0]["x"]))
        S.set_value(S.K_PY, int(points[0]["y"]))


def pixel_walkthrough(work: np.ndarray, kernel: np.ndarray, border: str, response: np.ndarray) -> None:
    h, w = work.shape[:2]
    if not (0 <= int(S.get(S.K_PX, -1)) < w and 0 <= int(S.get(S.K_PY, -1)) < h):
        S.set_value(S.K_PX, w // 2)  # the centre, for a new photo or a link without a pixel
        S.set_value(S.K_PY, h // 2)
    st.write("Pick a pixel: type its position, or click a pixel in the enlarged view.")
    c1, c2, c3 = st.columns([1, 1, 2])
    px = int(c1.number_input("x (column)", 0, w - 1, key=S.K_PX))
    py = int(c2.number_input("y (row)", 0, h - 1, key=S.K_PY))
    channel = 0
    if work.ndim == 3:
        channel = ["red", "green", "blue"].index(
            c3.radio("Channel", ["red", "green", "blue"], horizontal=True, key="kernels.channel"))
    plane = work if work.ndim == 2 else work[:, :, channel]
    x0, y0 = min(max(px - 7, 0), max(w - 15, 0)), min(max(py - 7, 0), max(h - 15, 0))
    window = plane[y0:y0 + 15, x0:x0 + 15]
    st.plotly_chart(figures.zoom_figure(window, x0, y0, (px, py)), key="kernels.zoom",
                    on_select=_on_zoom_click, selection_mode="points", width="content")

    ex = K.explain_pixel(plane, kernel, py, px, border=border)
    cols = st.columns(4)
    cols[0].plotly_chart(figures.matrix_figure(ex.patch, title="3×3 patch", fmt=".0f",
                                               grey=True, highlight_centre=True),
                         key="kernels.patch")
    cols[1].plotly_chart(figures.matrix_figure(ex.kernel, title="× kernel"),
                         key="kernels.kern")
    cols[2].plotly_chart(figures.matrix_figure(ex.products, title="= 9 products"),
                         key="kernels.prods")
    total = float(ex.total)
    out_value = float(response[py, px] if response.ndim == 2 else response[py, px, channel])
    terms = " + ".join(f"{K.format_weight(v)}" for v in ex.products.ravel())
    cols[3].markdown(f"**Add them up**\n\n{terms}\n\n= **{total:.4g}**")
    cols[3].caption(f"The output map holds {out_value:.4g} at (x={px}, y={py}). Each output pixel is "
                    "this multiply-then-add, done for every position — not a matrix product.")


def border_comparison(work: np.ndarray, kernel: np.ndarray, relu: bool) -> None:
    plane = work if work.ndim == 2 else to_grey(work)
    corner = plane[:10, :10]
    cols = st.columns(len(K.BORDERS))
    outs = {b: K.apply_kernel(corner, kernel, border=b, relu=relu) for b in K.BORDERS}
    for col, b in zip(cols, K.BORDERS):
        col.plotly_chart(figures.matrix_figure(outs[b], title=f"{b}", fmt=".0f", height=330),
                         key=f"kernels.border_{b}")
        col.caption(K.BORDER_HELP[b])
    differ = np.argwhere(~np.isclose(outs["zero"], outs["reflect"]))
    inner_same = np.allclose(outs["zero"][1:-1, 1:-1], outs["reflect"][1:-1, 1:-1])
    st.caption(f"Top-left 10×10 corner of the output (grey). {len(differ)} of these pixels differ "
               f"between zero and reflect borders, "
               f"{'all of them in the outermost row or column' if inner_same else 'reaching inside'}: "
               "the border rule only matters where the 3×3 window hangs over the edge.")


def layers_section(image_key: str, work: np.ndarray, kernel: np.ndarray, border: str,
                   mode: str) -> None:
    n = st.radio("Layers", [1, 2, 3], key=S.K_LAYERS, horizontal=True)
    if n == 1:
        st.write("One layer is the kernel above. Choose 2 or 3 layers to feed its output into more "
                 "kernels, with or without a ReLU in between, and see every intermediate map.")
        return
    layers = [K.Layer(kernel, relu=False)]
    cols = st.columns(3)
    if n >= 2:
        relu1 = cols[0].toggle("ReLU after layer 1", key=S.K_LAYER_RELU.format(1))
        layers[0] = K.Layer(kernel, relu=relu1)
        k2 = cols[1].selectbox("Layer 2 kernel", list(K.PRESETS), key=S.K_LAYER_PRESET.format(2))
        layers.append(K.Layer(K.PRESETS[k2]))
    if n == 3:
        relu2 = cols[0].toggle("ReLU after layer 2", key=S.K_LAYER_RELU.format(2))
        layers[1] = K.Layer(layers[1].kernel, relu=relu2)
        k3 = cols[2].selectbox("Layer 3 kernel", list(K.PRESETS), key=S.K_LAYER_PRESET.format(3))
        layers.append(K.Layer(K.PRESETS[k3]))
    plane = work if work.ndim == 2 else to_grey(work)
    maps = K.apply_layers(plane, layers, border=border)
    pics = st.columns(len(maps) + 1)
    with pics[0]:
        show(plane, "input (grey)", cache_key=image_key + ":grey")
    for i, (col, layer, fmap) in enumerate(zip(pics[1:], layers, maps), start=1):
        with col:
            img, note = render(fmap, mode)
            show(img, f"after layer {i}{' + ReLU' if layer.relu else ''} ({note})")
    if n >= 2 and not layers[0].relu:
        big = K.compose_linear(layers[0].kernel, layers[1].kernel)
        st.info("No ReLU between layers 1 and 2: two linear layers are one linear layer. This single "
                "5×5 kernel gives the same map as both together (away from the border):")
        st.plotly_chart(figures.matrix_figure(big, fmt=".3g", height=260), key="kernels.collapse")
    else:
        st.caption("Linear → non-linear → linear: the ReLU between kernels stops the stack from "
                   "collapsing into one kernel, which is what lets deep networks build shapes out "
                   "of edges.")


@st.cache_data(show_spinner="Running gradient descent…", max_entries=32)
def _learn(image_key: str, _work: np.ndarray, target: tuple[float, ...], cfg: K.LearnConfig):
    # A pure function of its inputs: cached so other widgets' reruns do not repeat the descent.
    t = np.array(target, np.float32).reshape(3, 3)
    history = list(K.learn_kernel(_work, t, cfg, report_every=max(1, cfg.steps // 100)))
    fig = figures.learning_animation([h.kernel for h in history], [h.loss for h in history],
                                     [h.step for h in history], t)
    return history, fig


def learn_section(image_key: str, work: np.ndarray, kernel: np.ndarray, border: str) -> None:
    st.write("Pick a hidden kernel. The page computes target = hidden kernel applied to the photo, "
             "then starts from nine guesses and nudges them by gradient descent until its output "
             "matches the target — nobody tells it the weights.")
    c = st.columns(5)
    hidden = c[0].selectbox("Hidden kernel", list(K.PRESETS) + [LEARN_TARGET_TYPED], key=S.K_HIDDEN)
    init = c[1].radio("Start from", ["zero", "random"], key=S.K_LEARN_INIT)
    rule = c[2].radio("Update", ["momentum", "plain"], key=S.K_LEARN_RULE,
                      format_func={"momentum": "with momentum 0.9",
                                   "plain": "plain gradient descent"}.get,
                      help="Plain: w −= lr × gradient. Momentum keeps 90 % of the previous step, "
                           "which crosses long, flat valleys of the loss much faster.")
    steps = c[3].select_slider("Steps", [25, 50, 100, 200, 400, 800], key=S.K_LEARN_STEPS)
    speed = c[4].select_slider("Learning rate (× safe rate)", [0.1, 0.5, 1.0, 1.9, 2.2, 3.0, 4.0],
                               key=S.K_LEARN_LR,
                               help="1 = 1 / the largest curvature of the loss for this photo. Plain "
                                    "gradient descent diverges above 2, with momentum 0.9 above 3.8.")
    target = kernel if hidden == LEARN_TARGET_TYPED else K.PRESETS[hidden]
    cfg = K.LearnConfig(steps=int(steps), lr_scale=float(speed),
                        momentum=0.9 if rule == "momentum" else 0.0, init=init, border=border)
    settings = (image_key, tuple(np.asarray(target).ravel().tolist()), cfg)
    if st.button("Run gradient descent", type="primary", key="kernels.learn_go"):
        st.session_state[S.K_LEARN_RUN] = settings
    if st.session_state.get(S.K_LEARN_RUN) != settings:
        st.info("Press “Run gradient descent” to learn the hidden kernel with these settings.")
        return
    history, fig = _learn(image_key, work, settings[1], cfg)
    final = history[-1]
    st.plotly_chart(fig, key="kernels.learn_fig")
    if not np.isfinite(final.loss) or final.loss > history[0].loss:
        st.error(f"Diverged at step {final.step}: the learning rate is too large, so every step "
                 "overshoots further than the last. Choose a smaller rate (below 2× the safe rate for "
                 "plain descent, below 3.8× with momentum).")
    else:
        err = float(np.abs(final.kernel - target).max())
        st.success(f"After {final.step} steps the loss fell from {history[0].loss:.3g} to "
                   f"{final.loss:.3g}; the largest weight error is {err:.3g}. Press ▶ Play to "
                   "watch the nine weights find their way.")


# ------------------------------------------------------------------------------------------------

def main() -> None:
    st.title("Kernel Playground")
    st.caption("A photo is a grid of numbers: height × width × 3 colour channels, each 0–255. A 3×3 "
               "kernel is nine weights. For every pixel, lay the kernel over the pixel and its eight "
               "neighbours, multiply each pair of numbers and add the nine products: "
               "out[y, x] = Σᵢ Σⱼ k[i, j] · img[y+i−1, x+j−1]. Like a CNN layer, the kernel is not "
               "flipped (strictly, this is cross-correlation).")
    init_state()
    left, right = st.columns([1, 2.2], gap="large")
    with left:
        image, name = image_source()
        st.subheader("Kernel")
        kernel, kernel_error = kernel_editor()
        if kernel_error:
            st.error(kernel_error)
        grey, mode, relu, border, side = output_options()
    image_key = f"{name}:{image.shape}:{hashlib.md5(image[::37, ::37].tobytes()).hexdigest()}"
    work = _working_copy(image_key, image, side, grey)
    image_key += f":{side}:{grey}"
    response = K.apply_kernel(work, kernel, border=border, relu=relu)
    with right:
        h, w = work.shape[:2]
        size_note = f"working at {w}×{h}" + (
            f" (photo is {image.shape[1]}×{image.shape[0]})" if work.shape[:2] != image.shape[:2] else "")
        a, b = st.columns(2)
        with a:
            show(work, f"input — {name}, {size_note}", cache_key=image_key)
        with b:
            img, note = render(response, mode)
            show(img, f"output — {note}")
        rng = (float(response.min()), float(response.max()))
        st.caption(f"The raw response runs from {rng[0]:.4g} to {rng[1]:.4g}: negative where the "
                   "kernel's negative weights meet bright pixels. A picture needs 0–255, so choose "
                   "how to show it.")
    tabs = right.tabs(["Pixel walkthrough", "Borders", "Layers", "Learn the kernel", "Share"])
    with tabs[0]:
        pixel_walkthrough(work, kernel, border, response)
    with tabs[1]:
        border_comparison(work, kernel, relu)
    with tabs[2]:
        layers_section(image_key, work, kernel, border, mode)
    with tabs[3]:
        learn_section(image_key, work, kernel, border)
    S.remember(widget_keys())
    query = urlstate.sync(PAGE)
    with tabs[4]:
        base = (st.context.url or "").split("?")[0]
        st.write("Share link — opens this page with the same kernel, photo, options and pixel "
                 "(copy it with the button at the right of the box):")
        st.code(f"{base}?{query}", language=None, wrap_lines=True)
        if S.get(S.K_SOURCE) != "sample":
            st.caption("Uploaded and webcam photos never go into a link; the link opens the sample "
                       "photo chosen under “Sample photo”.")


ensure_app_navigation()
main()
