"""The SGD page's controls: its state (defaults, then a shared link's values), the presets, the
widgets (each group returns plain values), and the cached data and runs they feed.
"""
from __future__ import annotations

import math

import numpy as np
import streamlit as st

from engine import sgd
from ui import state, urlstate

PAGE = "sgd"
#: the learning-rate slider's values: 1e-4 … 10, about 4.7 % apart (evenly spaced on a log scale)
LR_GRID = tuple(float(f"{10 ** (e / 50):.3g}") for e in range(-200, 51))
BATCH_CHOICES = (1, 2, 5, 10, 20, 50, 100, 200, 500)
SPEEDS = {300: "slow", 150: "calm", 80: "normal", 30: "fast"}
PRESETS = {
    "lesson": "the lesson's set-up: lr 0.1, 100 full-batch steps from (−1, 1)",
    "too low": "lr 0.001: every step is tiny, after 100 steps the line has hardly moved",
    "too high": "just above the critical learning rate: each step overshoots a little more",
    "way too high": "about three times the critical rate: the loss explodes in a few steps",
}
#: what the "lesson" preset leaves alone: how the run is shown, not which run it is
DISPLAY_KEYS = (state.S_LOGY, state.S_SURFACE3D, state.S_LINE_BY_LINE, state.S_SPEED,
                state.S_COMPARE, state.S_ACTUAL, *(state.S_SCORE.format(i) for i in (1, 2, 3)))


# State ------------------------------------------------------------------------------------------

def init_state() -> None:
    """Defaults first, then a shared link's values on the session's first visit of this page."""
    for p in urlstate.table(PAGE):
        state.restore(p.key, p.default)
    if not st.session_state.get(state.S_URL_LOADED):
        st.session_state[state.S_URL_LOADED] = True
        for problem in urlstate.load(PAGE):
            st.warning(problem)
    # a value typed into a link may fall between the sliders' stops: move it to the nearest one
    state.set_value(state.S_LR, _nearest(LR_GRID, float(state.get(state.S_LR)), log=True))
    state.set_value(state.S_SPEED, _nearest(tuple(SPEEDS), int(state.get(state.S_SPEED))))
    state.set_value(state.S_BATCH, _nearest(batch_options(int(state.get(state.S_N))),
                                            int(state.get(state.S_BATCH))))


def widget_keys() -> list[str]:
    return [p.key for p in urlstate.table(PAGE)]


def _nearest(options, value, log: bool = False):
    if value in options:
        return value
    f = (lambda v: math.log(max(v, 1e-12))) if log else float
    return min(options, key=lambda o: abs(f(o) - f(value)))


def batch_options(n: int) -> tuple[int, ...]:
    """Mini-batch sizes smaller than the data, then 0 = the full batch."""
    return tuple(b for b in BATCH_CHOICES if b < n) + (0,)


def lr_above(target: float) -> float:
    """The slider's first learning rate at or above `target`."""
    return next((v for v in LR_GRID if v >= target), LR_GRID[-1])


def _apply_preset(name: str) -> None:
    """Button callback: runs before the script, so the widgets are drawn with the new values."""
    if name == "lesson":
        for p in urlstate.table(PAGE):
            if p.key not in DISPLAY_KEYS:
                state.set_value(p.key, p.default)
        return
    if name == "too low":
        lr = 0.001
    else:
        try:
            x, _ = line_data(int(state.get(state.S_N)), float(state.get(state.S_NOISE)),
                             int(state.get(state.S_SEED)))
            crit = sgd.critical_lr(x)
        except sgd.SGDError:
            crit = 1.0
        lr = lr_above(1.05 * crit if name == "too high" else 3.0 * crit)
    state.set_value(state.S_LR, lr)
    state.set_value(state.S_OPTIMIZER, "sgd")
    state.set_value(state.S_BATCH, 0)
    state.set_value(state.S_STEPS, 100)


# Data and runs (cached: the same controls give the same numbers without recomputing) -------------

@st.cache_data(show_spinner=False, max_entries=64)
def line_data(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = sgd.make_line_data(n, noise=noise, seed=seed)
    return x.numpy(), y.numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def run_fit(n: int, noise: float, seed: int, a0: tuple[float, float], lr: float, steps: int,
            batch_size: int | None, optimizer: str, momentum: float = 0.9) -> sgd.FitResult:
    x, y = line_data(n, noise, seed)
    return sgd.fit(x, y, a0=a0, lr=lr, steps=steps, batch_size=batch_size, optimizer=optimizer,
                   seed=seed, momentum=momentum)


# Widgets: each group returns plain values --------------------------------------------------------

def preset_buttons() -> None:
    st.write("**Presets**")
    cols = st.columns(2)
    for i, (name, help_text) in enumerate(PRESETS.items()):
        cols[i % 2].button(name, key=state.S_PRESET.format(name.replace(" ", "_")), help=help_text,
                           on_click=_apply_preset, args=(name,), width="stretch")


def training_controls() -> dict:
    lr = st.select_slider("Learning rate (log scale)", options=LR_GRID, key=state.S_LR,
                          format_func=lambda v: f"{v:g}",
                          help="What the gradient is multiplied by before it is subtracted from "
                               "the parameters. The slider's stops are evenly spaced on a log scale.")
    optimizer = st.radio("Optimizer", sgd.OPTIMIZERS, key=state.S_OPTIMIZER, horizontal=True,
                         format_func=lambda o: {"sgd": "plain", "momentum": "momentum",
                                                "adam": "Adam"}[o],
                         help=" · ".join(sgd.OPTIMIZER_LABELS.values()))
    beta = float(state.get(state.S_BETA, 0.9))
    if optimizer == "momentum":
        beta = st.slider("Momentum β", 0.0, 0.99, step=0.01, key=state.S_BETA,
                         help="How much of the last step each new step keeps: v = β·v + gradient, "
                              "a −= lr·v. 0 is plain SGD; 0.9 is the usual choice.")
    n = int(state.get(state.S_N))
    batch = st.select_slider("Batch size", options=batch_options(n), key=state.S_BATCH,
                             format_func=lambda b: f"all {n} (full batch)" if b == 0 else str(b),
                             help="Full batch: every step uses every point (gradient descent). "
                                  "A smaller number: every step uses a random handful (stochastic "
                                  "gradient descent); one pass over all points is an epoch.")
    steps = st.slider("Steps", 1, 1000, key=state.S_STEPS)
    return {"lr": float(lr), "optimizer": optimizer, "batch_size": int(batch) or None,
            "steps": int(steps), "momentum": float(beta)}


def data_controls() -> dict:
    with st.expander("Points and start", expanded=False):
        n = st.number_input("Number of points", 10, 1000, step=10, key=state.S_N)
        noise = st.slider("Noise (added uniform 0…noise)", 0.0, 5.0, step=0.1, key=state.S_NOISE)
        seed = st.number_input("Seed", 0, 2**31 - 1, step=1, key=state.S_SEED,
                               help="Same seed, same points and the same mini-batches.")
        c1, c2 = st.columns(2)
        a1 = c1.number_input("start a1 (slope)", -10.0, 10.0, step=0.5, key=state.S_A1)
        a2 = c2.number_input("start a2 (intercept)", -10.0, 10.0, step=0.5, key=state.S_A2)
    return {"n": int(n), "noise": float(noise), "seed": int(seed), "a0": (float(a1), float(a2))}


def display_controls() -> dict:
    with st.expander("Display", expanded=False):
        log_y = st.toggle("Loss on a log scale", key=state.S_LOGY)
        line_by_line = st.toggle("Line by line (four frames per step)", key=state.S_LINE_BY_LINE,
                                 help="Slow motion through the code: predict, loss, backward, "
                                      "update. Fits the first 49 steps into the 200 frames.")
        surface3d = st.toggle("Loss surface in 3D", key=state.S_SURFACE3D)
        speed = st.select_slider("Animation speed", options=tuple(SPEEDS), key=state.S_SPEED,
                                 format_func=SPEEDS.get)
    return {"log_y": log_y, "line_by_line": line_by_line, "surface3d": surface3d,
            "frame_ms": int(speed)}
