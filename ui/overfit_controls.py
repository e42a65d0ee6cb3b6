"""The Fit and overfit page's controls: its state (defaults, then a shared link's values) and the
widgets, which return plain values; every one of them is a row of the page's URL table."""
from __future__ import annotations

from typing import Any

import streamlit as st

from engine.overfit import CURVES, MAX_DEGREE
from ui import state, urlstate
from ui.urlstate import OVERFIT_WDS

PAGE = "overfit"
CURVE_LABELS = {"sine": "sin(πx)", "cubic": "1.5x³ − x + 0.3"}


def init_state() -> None:
    """Defaults first, then a shared link's values on the session's first visit of this page."""
    for p in urlstate.table(PAGE):
        state.restore(p.key, p.default)
    if not st.session_state.get(state.O_URL_LOADED):
        st.session_state[state.O_URL_LOADED] = True
        for problem in urlstate.load(PAGE):
            st.warning(problem)


def widget_keys() -> list[str]:
    return [p.key for p in urlstate.table(PAGE)]


def _wd_label(value: float) -> str:
    return "0 (none)" if value == 0 else f"{value:g}"


def model_controls() -> dict[str, Any]:
    """The degree of the polynomial and the weight decay of the fit."""
    degree = st.slider("Degree of the polynomial", 1, MAX_DEGREE, key=state.O_DEGREE,
                       help="A degree-d polynomial has d + 1 coefficients: 1 is a line, 2 a "
                            "parabola, 15 can bend fifteen times.")
    wd = st.select_slider("Weight decay (wd)", OVERFIT_WDS, key=state.O_WD, format_func=_wd_label,
                          help="Adds wd × (sum of the squared coefficients) to the loss, so large "
                               "coefficients — the ones a wiggly curve needs — cost something. "
                               "The same idea as weight decay when training a network.")
    return {"degree": int(degree), "wd": float(wd)}


def data_controls() -> dict[str, Any]:
    """The curve, how many points, their noise, the held-out share and the seed."""
    curve = st.selectbox("True curve", CURVES, key=state.O_CURVE, format_func=CURVE_LABELS.get)
    n = st.slider("Points", 10, 200, step=5, key=state.O_N)
    noise = st.slider("Noise", 0.0, 1.0, step=0.05, key=state.O_NOISE,
                      help="Standard deviation of the random amount added to each point's y.")
    held = st.slider("Held-out share", 0.1, 0.5, step=0.05, key=state.O_VALID,
                     help="Points the fit never sees; they measure how well it generalises "
                          "(the validation set in miniature).")
    seed = st.number_input("Seed", 0, 2**31 - 1, key=state.O_SEED,
                           help="The same seed gives the same points and the same split.")
    return {"curve": str(curve), "n": int(n), "noise": float(noise), "valid_pct": float(held),
            "seed": int(seed)}


def view_controls() -> dict[str, bool]:
    c1, c2 = st.columns(2)
    return {"truth": bool(c1.toggle("True curve", key=state.O_TRUTH)),
            "log_y": bool(c2.toggle("Log scale", key=state.O_LOGY))}


__all__ = ["PAGE", "init_state", "widget_keys", "model_controls", "data_controls",
           "view_controls"]
