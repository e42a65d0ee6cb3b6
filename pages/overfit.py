"""Fit and overfit: polynomials of degree 1–15 through noisy points, training and held-out loss
against the degree (the U shape), and weight decay taming the wiggles.

Thin page: widgets return plain values (ui/overfit_controls.py), engine.overfit fits the
polynomials by least squares, ui/overfit_figs.py draws them. Every control is in the URL.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine import overfit
from ui import overfit_controls as controls
from ui import overfit_figs, state, urlstate
from ui.figures import ReadyFigure
from ui.nav import ensure_app_navigation

VERDICTS = {
    "underfit": ("warning", "Underfitting: the curve is too stiff. Even the training points sit "
                            "far from it — it cannot bend the way the data does. A higher degree "
                            "(more parameters) would fit both kinds of point better."),
    "good": ("success", "A good fit: the held-out points, which the fit never saw, are about as "
                        "close to the curve as any degree gets them."),
    "overfit": ("error", "Overfitting: the curve bends to pass near every training point — "
                         "noise included — and misses the held-out points it never saw. Lower "
                         "the degree, add points, or raise the weight decay."),
}


@st.cache_data(show_spinner=False, max_entries=64)
def compute(curve: str, n: int, noise: float, valid_pct: float, seed: int, degree: int,
            wd: float) -> dict:
    """Points, the chosen fit on a fine grid, and the loss of every degree (cheap: 15 small
    least-squares problems)."""
    points = overfit.make_points(n, noise, seed, valid_pct, curve)
    w = overfit.fit_poly(points.x_train, points.y_train, degree, wd)
    xs = np.linspace(-1, 1, 300)
    by_degree = overfit.degree_curve(points, wd)
    return {"points": points, "w": w, "xs": xs, "fitted": overfit.predict(w, xs),
            "truth": overfit.true_curve(xs, curve), "curve": by_degree,
            "train": overfit.mse(w, points.x_train, points.y_train),
            "valid": overfit.mse(w, points.x_valid, points.y_valid),
            "verdict": overfit.verdict(by_degree, degree)}


def explain() -> None:
    st.markdown(
        "**Underfitting and overfitting, in our words.** A model *underfits* when it is too "
        "simple, or has not trained enough, to follow the pattern: it is wrong even on the "
        "examples it learned from. It *overfits* when it follows its training examples so "
        "closely that it learns their accidents (here: the noise) — right on those, wrong on "
        "new ones. Only held-out data tells the two apart from a good fit: the training loss "
        "keeps falling with every extra degree, the held-out loss falls and then rises again.")
    st.markdown(
        "**Weight decay** adds the size of the weights to the loss. A curve that wiggles through "
        "every noisy point needs huge coefficients; with weight decay those cost more than the "
        "little they gain, so a high degree stays smooth. Dropout and augmentation fight "
        "overfitting in a network in the same spirit; on the Train page, the lesson's "
        "overfitting experiment turns all three off and trains on a tenth of the digits.")


def main() -> None:
    st.title("Fit and overfit")
    st.caption("Points from a smooth curve plus noise. Some train a polynomial (filled dots); the "
               "others are held out (hollow) and only ever measure it. Raise the degree and watch "
               "the training loss fall while the held-out loss falls, then rises: the U shape.")
    controls.init_state()
    left, right = st.columns([1.1, 3], gap="large")
    with left:
        model = controls.model_controls()
        data = controls.data_controls()
        view = controls.view_controls()
    state.remember(controls.widget_keys())
    query = urlstate.sync(controls.PAGE)
    try:
        res = compute(data["curve"], data["n"], data["noise"], data["valid_pct"], data["seed"],
                      model["degree"], model["wd"])
    except overfit.OverfitError as exc:
        right.error(str(exc))
        return
    points, by_degree = res["points"], res["curve"]
    with right:
        a, b = st.columns(2)
        a.plotly_chart(ReadyFigure(overfit_figs.fit_figure(
            points.x_train, points.y_train, points.x_valid, points.y_valid, res["xs"],
            res["fitted"], res["truth"] if view["truth"] else None, model["degree"])),
            key=state.O_FIT_FIG)
        b.plotly_chart(ReadyFigure(overfit_figs.degree_figure(
            by_degree.degrees.tolist(), by_degree.train.tolist(), by_degree.valid.tolist(),
            model["degree"], by_degree.best, view["log_y"])), key=state.O_DEGREE_FIG)
        c1, c2, c3 = st.columns(3)
        c1.metric("Training loss", f"{res['train']:.4f}")
        c2.metric("Held-out loss", f"{res['valid']:.4f}")
        c3.metric("Best held-out degree", by_degree.best)
        level, text = VERDICTS[res["verdict"]]
        getattr(st, level)(f"Degree {model['degree']}: {text}")
        with st.expander(f"The {len(res['w'])} coefficients of this fit (constant first)"):
            st.code(np.array2string(res["w"], precision=3, suppress_small=True, max_line_width=90),
                    language=None)
            st.caption("Weight decay keeps these small; without it, a high degree needs huge "
                       "ones of alternating sign to pass through every training point.")
    explain()
    base = (st.context.url or "").split("?")[0]
    st.write("**Share link** — every control above, seed included:")
    st.code(f"{base}?{query}", language=None, wrap_lines=True)


ensure_app_navigation()
main()
