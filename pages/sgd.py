"""SGD: fit a line by gradient descent and watch what the learning rate does.

Thin page: widgets return plain values (ui/sgd_controls.py), engine.sgd computes the fit,
ui/sgd_sections.py draws it with the figures of ui/sgd_figs.py. The animation plays in the browser;
nothing here runs per frame.
"""
from __future__ import annotations

import streamlit as st

from engine import sgd
from ui import sgd_controls as controls
from ui import sgd_sections as sections
from ui import state, urlstate
from ui.nav import ensure_app_navigation


def main() -> None:
    st.title("SGD: fitting a line by gradient descent")
    st.caption("Two parameters, a1 and a2, describe a line y = a1·x + a2. Training starts from a "
               "wrong line and repeats one step: predict, measure the loss, ask for the gradient, "
               "move the parameters a little against it. The learning rate decides how little. "
               "Press ▶ Play under the chart; move the learning rate and play again.")
    controls.init_state()
    left, right = st.columns([1.25, 3], gap="large")
    with left:
        controls.preset_buttons()
        run = controls.training_controls()
        data = controls.data_controls()
        view = controls.display_controls()
    state.remember(controls.widget_keys())
    query = urlstate.sync(controls.PAGE)
    with left:
        sections.share(query)

    try:
        x, y = controls.line_data(data["n"], data["noise"], data["seed"])
        res = controls.run_fit(**data, **run)
    except sgd.SGDError as exc:
        with right:
            st.error(str(exc))
        return
    with right:
        sections.critical_lr_note(x, run)
        sections.animation(x, y, res, view)
        sections.outcome(x, y, res, data["noise"])
        if view["surface3d"]:
            sections.surface3d(x, y, res)
        sections.loop_script(run)
    sections.why_learning_rate()
    sections.compare_section(x, y, data, run)
    sections.vocabulary()
    sections.softmax_box()


ensure_app_navigation()
main()
