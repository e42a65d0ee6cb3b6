"""The Kernel Playground's sections: pictures at display size, the pixel walkthrough, the border
comparison, stacked layers, learning a hidden kernel, and the share link. Engine calls in, Streamlit
elements and the figures of ui/kernels_figs.py out.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine import kernels
from engine.images import encode_jpeg, resize_to_fit, to_grey
from ui import kernels_figs, state
from ui.kernels_controls import LEARN_TARGET_TYPED

DISPLAY_SIDE = 640          # longest side of a picture drawn on the page, in pixels


# Pictures ---------------------------------------------------------------------------------------

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
    """A response as a display-sized picture, coloured on the full-size response's scale."""
    scale = kernels.response_scale(response, mode)
    small = resize_to_fit(response, DISPLAY_SIDE)
    rendered = kernels.render_response(small, mode, scale=scale)
    return rendered.image, rendered.note


# Pixel walkthrough ------------------------------------------------------------------------------

def _on_zoom_click() -> None:
    """A click on the enlarged view picks that pixel (runs before the rerun, so widgets follow)."""
    points = st.session_state[state.K_ZOOM]["selection"]["points"]
    if points:
        state.set_value(state.K_PX, int(points[0]["x"]))
        state.set_value(state.K_PY, int(points[0]["y"]))


def pixel_walkthrough(work: np.ndarray, kernel: np.ndarray, border: str, response: np.ndarray) -> None:
    h, w = work.shape[:2]
    if not (0 <= int(state.get(state.K_PX, -1)) < w and 0 <= int(state.get(state.K_PY, -1)) < h):
        state.set_value(state.K_PX, w // 2)  # the centre, for a new photo or a link without a pixel
        state.set_value(state.K_PY, h // 2)
    st.write("Pick a pixel: type its position, or click a pixel in the enlarged view.")
    c1, c2, c3 = st.columns([1, 1, 2])
    px = int(c1.number_input("x (column)", 0, w - 1, key=state.K_PX))
    py = int(c2.number_input("y (row)", 0, h - 1, key=state.K_PY))
    channel = 0
    if work.ndim == 3:
        channel = ["red", "green", "blue"].index(
            c3.radio("Channel", ["red", "green", "blue"], horizontal=True, key=state.K_CHANNEL))
    plane = work if work.ndim == 2 else work[:, :, channel]
    x0, y0 = min(max(px - 7, 0), max(w - 15, 0)), min(max(py - 7, 0), max(h - 15, 0))
    window = plane[y0:y0 + 15, x0:x0 + 15]
    st.plotly_chart(kernels_figs.zoom_figure(window, x0, y0, (px, py)), key=state.K_ZOOM,
                    on_select=_on_zoom_click, selection_mode="points", width="content")

    ex = kernels.explain_pixel(plane, kernel, py, px, border=border)
    cols = st.columns(4)
    cols[0].plotly_chart(kernels_figs.matrix_figure(ex.patch, title="3×3 patch", fmt=".0f",
                                                    grey=True, highlight_centre=True),
                         key=state.K_PATCH_FIG)
    cols[1].plotly_chart(kernels_figs.matrix_figure(ex.kernel, title="× kernel"),
                         key=state.K_KERNEL_FIG)
    cols[2].plotly_chart(kernels_figs.matrix_figure(ex.products, title="= 9 products"),
                         key=state.K_PRODUCTS_FIG)
    total = float(ex.total)
    out_value = float(response[py, px] if response.ndim == 2 else response[py, px, channel])
    terms = " + ".join(f"{kernels.format_weight(v)}" for v in ex.products.ravel())
    cols[3].markdown(f"**Add them up**\n\n{terms}\n\n= **{total:.4g}**")
    cols[3].caption(f"The output map holds {out_value:.4g} at (x={px}, y={py}). Each output pixel is "
                    "this multiply-then-add, done for every position — not a matrix product.")


# Borders and layers -----------------------------------------------------------------------------

def border_comparison(work: np.ndarray, kernel: np.ndarray, relu: bool) -> None:
    plane = work if work.ndim == 2 else to_grey(work)
    corner = plane[:10, :10]
    cols = st.columns(len(kernels.BORDERS))
    outs = {b: kernels.apply_kernel(corner, kernel, border=b, relu=relu) for b in kernels.BORDERS}
    for col, b in zip(cols, kernels.BORDERS):
        col.plotly_chart(kernels_figs.matrix_figure(outs[b], title=f"{b}", fmt=".0f", height=330),
                         key=state.K_BORDER_FIG.format(b))
        col.caption(kernels.BORDER_HELP[b])
    differ = np.argwhere(~np.isclose(outs["zero"], outs["reflect"]))
    inner_same = np.allclose(outs["zero"][1:-1, 1:-1], outs["reflect"][1:-1, 1:-1])
    st.caption(f"Top-left 10×10 corner of the output (grey). {len(differ)} of these pixels differ "
               f"between zero and reflect borders, "
               f"{'all of them in the outermost row or column' if inner_same else 'reaching inside'}: "
               "the border rule only matters where the 3×3 window hangs over the edge.")


def layers_section(image_key: str, work: np.ndarray, kernel: np.ndarray, border: str,
                   mode: str) -> None:
    n = st.radio("Layers", [1, 2, 3], key=state.K_LAYERS, horizontal=True)
    if n == 1:
        st.write("One layer is the kernel above. Choose 2 or 3 layers to feed its output into more "
                 "kernels, with or without a ReLU or a sigmoid in between, and see every "
                 "intermediate map.")
        activations_note()
        return
    layers = [kernels.Layer(kernel, relu=False)]
    act = st.radio("Non-linearity between layers", list(ACTIVATIONS), key=state.K_ACT,
                   horizontal=True, format_func=ACTIVATIONS.get,
                   help="ReLU keeps positive numbers and turns negative ones into 0. Sigmoid "
                        "squeezes every number into 0…1.")
    name = "ReLU" if act == "relu" else "sigmoid"

    def layer(k: np.ndarray, on: bool) -> kernels.Layer:
        return kernels.Layer(k, relu=on and act == "relu", sigmoid=on and act == "sigmoid")

    cols = st.columns(3)
    if n >= 2:
        relu1 = cols[0].toggle(f"{name} after layer 1", key=state.K_LAYER_RELU.format(1))
        layers[0] = layer(kernel, relu1)
        k2 = cols[1].selectbox("Layer 2 kernel", list(kernels.PRESETS),
                               key=state.K_LAYER_PRESET.format(2))
        layers.append(kernels.Layer(kernels.PRESETS[k2]))
    if n == 3:
        relu2 = cols[0].toggle(f"{name} after layer 2", key=state.K_LAYER_RELU.format(2))
        layers[1] = layer(layers[1].kernel, relu2)
        k3 = cols[2].selectbox("Layer 3 kernel", list(kernels.PRESETS),
                               key=state.K_LAYER_PRESET.format(3))
        layers.append(kernels.Layer(kernels.PRESETS[k3]))
    plane = work if work.ndim == 2 else to_grey(work)
    maps = kernels.apply_layers(plane, layers, border=border)
    pics = st.columns(len(maps) + 1)
    with pics[0]:
        show(plane, "input (grey)", cache_key=image_key + ":grey")
    for i, (col, layer, fmap) in enumerate(zip(pics[1:], layers, maps), start=1):
        with col:
            img, note = render(fmap, mode)
            after = " + ReLU" if layer.relu else " + sigmoid" if layer.sigmoid else ""
            show(img, f"after layer {i}{after} ({note})")
    if n >= 2 and not (layers[0].relu or layers[0].sigmoid):
        big = kernels.compose_linear(layers[0].kernel, layers[1].kernel)
        st.info("No ReLU between layers 1 and 2: two linear layers are one linear layer. This single "
                "5×5 kernel gives the same map as both together (away from the border):")
        st.plotly_chart(kernels_figs.matrix_figure(big, fmt=".3g", height=260),
                        key=state.K_COLLAPSE_FIG)
    else:
        st.caption(f"Linear → non-linear → linear: the {name} between kernels stops the stack from "
                   "collapsing into one kernel, which is what lets deep networks build shapes out "
                   "of edges.")
    activations_note()


ACTIVATIONS = {"relu": "ReLU: max(0, x)", "sigmoid": "sigmoid: 1 / (1 + e⁻ˣ)"}


def activations_note() -> None:
    """ReLU and sigmoid side by side, and why networks put ReLU between their layers."""
    left, right = st.columns([1, 1.4])
    left.plotly_chart(kernels_figs.activation_figure(), key=state.K_ACT_FIG)
    right.markdown("**ReLU beside sigmoid.** Both bend a straight line, which is all a "
                   "non-linearity has to do. ReLU leaves positive numbers alone and turns negative "
                   "ones into 0. Sigmoid squeezes any number into the range 0 to 1: 0 becomes 0.5, "
                   "large positive numbers end up near 1 and large negative ones near 0.")
    right.caption("A kernel's response to a photo runs into the hundreds, so sigmoid turns almost "
                  "every pixel into 0 or 1 and the map looks like black and white. Its slope there "
                  "is nearly flat, so gradients die out — one reason networks use ReLU between "
                  "layers. Sigmoid is kept for the end, where a score must become a number "
                  "between 0 and 1.")


# Learning a hidden kernel -----------------------------------------------------------------------

@st.cache_data(show_spinner="Running gradient descent…", max_entries=32)
def _learn(image_key: str, _work: np.ndarray, target: tuple[float, ...], cfg: kernels.LearnConfig):
    # A pure function of its inputs: cached so other widgets' reruns do not repeat the descent.
    t = np.array(target, np.float32).reshape(3, 3)
    history = list(kernels.learn_kernel(_work, t, cfg, report_every=max(1, cfg.steps // 100)))
    fig = kernels_figs.learning_animation([h.kernel for h in history], [h.loss for h in history],
                                          [h.step for h in history], t)
    return history, fig


def learn_section(image_key: str, work: np.ndarray, kernel: np.ndarray, border: str) -> None:
    st.write("Pick a hidden kernel. The page computes target = hidden kernel applied to the photo, "
             "then starts from nine guesses and nudges them by gradient descent until its output "
             "matches the target — nobody tells it the weights.")
    c = st.columns(5)
    hidden = c[0].selectbox("Hidden kernel", list(kernels.PRESETS) + [LEARN_TARGET_TYPED],
                            key=state.K_HIDDEN)
    init = c[1].radio("Start from", ["zero", "random"], key=state.K_LEARN_INIT)
    rule = c[2].radio("Update", ["momentum", "plain"], key=state.K_LEARN_RULE,
                      format_func={"momentum": "with momentum 0.9",
                                   "plain": "plain gradient descent"}.get,
                      help="Plain: w −= lr × gradient. Momentum keeps 90 % of the previous step, "
                           "which crosses long, flat valleys of the loss much faster.")
    steps = c[3].select_slider("Steps", [25, 50, 100, 200, 400, 800], key=state.K_LEARN_STEPS)
    speed = c[4].select_slider("Learning rate (× safe rate)", [0.1, 0.5, 1.0, 1.9, 2.2, 3.0, 4.0],
                               key=state.K_LEARN_LR,
                               help="1 = 1 / the largest curvature of the loss for this photo. Plain "
                                    "gradient descent diverges above 2, with momentum 0.9 above 3.8.")
    target = kernel if hidden == LEARN_TARGET_TYPED else kernels.PRESETS[hidden]
    cfg = kernels.LearnConfig(steps=int(steps), lr_scale=float(speed),
                              momentum=0.9 if rule == "momentum" else 0.0, init=init, border=border)
    settings = (image_key, tuple(np.asarray(target).ravel().tolist()), cfg)
    if st.button("Run gradient descent", type="primary", key=state.K_LEARN_GO):
        st.session_state[state.K_LEARN_RUN] = settings
    if st.session_state.get(state.K_LEARN_RUN) != settings:
        st.info("Press “Run gradient descent” to learn the hidden kernel with these settings.")
        return
    history, fig = _learn(image_key, work, settings[1], cfg)
    final = history[-1]
    st.plotly_chart(fig, key=state.K_LEARN_FIG)
    if not np.isfinite(final.loss) or final.loss > history[0].loss:
        st.error(f"Diverged at step {final.step}: the learning rate is too large, so every step "
                 "overshoots further than the last. Choose a smaller rate (below 2× the safe rate for "
                 "plain descent, below 3.8× with momentum).")
    else:
        err = float(np.abs(final.kernel - target).max())
        st.success(f"After {final.step} steps the loss fell from {history[0].loss:.3g} to "
                   f"{final.loss:.3g}; the largest weight error is {err:.3g}. Press ▶ Play to "
                   "watch the nine weights find their way.")


def share(query: str) -> None:
    base = (st.context.url or "").split("?")[0]
    st.write("Share link — opens this page with the same kernel, photo, options and pixel "
             "(copy it with the button at the right of the box):")
    st.code(f"{base}?{query}", language=None, wrap_lines=True)
    if state.get(state.K_SOURCE) != "sample":
        st.caption("Uploaded and webcam photos never go into a link; the link opens the sample "
                   "photo chosen under “Sample photo”.")
