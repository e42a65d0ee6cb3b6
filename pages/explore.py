"""Explorer: what a trained model gets wrong (confusion matrix, top losses, Grad-CAM), cleaning the
data behind it, predicting a new photo on the CPU, and downloading the model.

Thin page: engine.runs opens saved runs, engine.interpret / engine.cleaner / engine.export compute,
engine.demo makes the demo run; each tab is drawn by a ui.explore_* module.
"""
from __future__ import annotations

import math
import time

import streamlit as st

from engine.demo import make_demo_run
from engine.runs import Run, RunError, RunInfo, list_runs, load_run, read_info
from ui import state
from ui import urlstate
from ui import explore_inside
from ui.explore_cleaner import clean_section
from ui.explore_common import ENGINE_ERRORS
from ui.explore_export import export_section
from ui.explore_mistakes import mistakes, top_losses_section
from ui.explore_predict import predict_section
from ui.nav import ensure_app_navigation

PAGE = "explore"
WIDGETS = [state.E_CM_MODE, state.E_MIN_VAL, state.E_K, state.E_ORDER, state.E_CAM_ALPHA, state.E_CMAP, state.E_CLEAN_SPLIT,
           state.E_CLEAN_CLASS, state.E_CLEAN_N, state.E_PRED_SOURCE, state.E_PRED_ITEM, state.E_RUN,
           *explore_inside.WIDGETS]


def init_state() -> None:
    """Widget defaults, the session's lasting dicts, and a ?run= link (once per session)."""
    state.restore(state.E_CM_MODE, "counts")
    state.restore(state.E_MIN_VAL, 1)
    state.restore(state.E_K, 8)
    state.restore(state.E_ORDER, "largest")
    state.restore(state.E_CAM_ALPHA, 0.5)
    state.restore(state.E_CMAP, "cividis")
    state.restore(state.E_CLEAN_SPLIT, "valid")
    state.restore(state.E_CLEAN_N, 12)
    state.restore(state.E_PRED_SOURCE, "valid")
    explore_inside.init_state()
    for key in (state.E_DECISIONS, state.E_JOURNAL, state.E_TRAIN_LOSSES, state.E_CAMS):
        st.session_state.setdefault(key, {})
    if not st.session_state.get(state.E_URL_LOADED):
        st.session_state[state.E_URL_LOADED] = True
        # The link's other rows (the Inside tab's); its run is checked below before it is used.
        for problem in urlstate.load(PAGE, {k: v for k, v in st.query_params.items() if k != "run"}):
            st.warning(problem)
        run_id = st.query_params.get("run")
        if run_id:
            try:
                read_info(run_id)
                st.session_state[state.E_SHARED] = run_id
                state.set_value(state.E_RUN, run_id)
            except RunError as exc:
                st.error(f"{exc} Showing your own runs instead.")


def _describe(info: RunInfo, owner: str) -> str:
    # Seconds and the start of the id keep two runs with the same settings apart in the list.
    when = time.strftime("%d %b %H:%M:%S", time.localtime(info.created))
    err = info.metrics.get("error_rate", float("nan"))
    measured = isinstance(err, (int, float)) and math.isfinite(err)
    rate = f"error rate {err:.1%}" if measured else "no validation set"
    text = (f"{info.data} · {info.arch} · {info.epochs} epoch{'s' * (info.epochs != 1)} · "
            f"{rate} · {when} · {info.id[:6]}")
    return text + ("" if info.owner == owner else " · shared with you (read-only)")


def pick_run(owner: str) -> Run | None:
    """Draw the run selector; return the chosen Run, or None when there is nothing to show."""
    infos = {i.id: i for i in list_runs(owner)}
    shared = st.session_state.get(state.E_SHARED)
    if shared and shared not in infos:
        try:
            infos[shared] = read_info(shared)
        except RunError as exc:
            st.error(str(exc))
    if not infos:
        return None
    ids = list(infos)
    if state.get(state.E_RUN) not in ids:
        state.set_value(state.E_RUN, ids[0])   # the session's latest run
    run_id = st.selectbox("Run", ids, key=state.E_RUN, format_func=lambda i: _describe(infos[i], owner),
                          help="Your own runs, newest first, and a run opened from a shared link.")
    try:
        return load_run(run_id)
    except RunError as exc:
        st.error(str(exc))
        return None


def no_run(owner: str) -> None:
    """Nothing to explore yet: point to the Train page, or make a tiny demo run here."""
    st.info("There is no trained model to explore yet. Train one on the Train page — the digits "
            "take about a minute on a CPU — and it appears here, or make a tiny demo run now.")
    try:
        st.page_link("pages/train.py", label="Go to the Train page", icon=":material/model_training:")
    except Exception:  # the Train page is not part of this app yet (or not in the navigation)
        st.caption("(The Train page is not available in this copy of the app.)")
    if st.button("Make a quick demo run (300 digits, 3 epochs)", key=state.E_DEMO):
        with st.spinner("Training a small CNN on 300 digits for three epochs…"):
            try:
                info = make_demo_run(owner)
            except ENGINE_ERRORS as exc:
                st.error(f"The demo run could not be made: {exc}")
                return
        state.set_value(state.E_RUN, info.id)
        st.rerun()


def main() -> None:
    init_state()
    st.title("Explorer")
    st.write("Look at what a trained model gets wrong, clean the data behind it, and use it on a "
             "new photo.")
    owner = state.owner_token()
    try:
        run = pick_run(owner)
    except ENGINE_ERRORS as exc:
        st.error(str(exc))
        run = None
    if run is None:
        no_run(owner)
        state.remember(WIDGETS)
        return
    read_only = run.info.owner != owner
    if read_only:
        st.info("You opened a run someone shared with a link: you can look at it and predict with "
                "it, but not change its data.")
    state.remember(WIDGETS)
    urlstate.sync(PAGE)
    tabs = st.tabs(["Mistakes", "Top losses", "Clean", "Predict", "Export", "Inside"])
    sections = [lambda: mistakes(run), lambda: top_losses_section(run),
                lambda: clean_section(run, owner, read_only), lambda: predict_section(run),
                lambda: export_section(run), lambda: explore_inside.inside_section(run)]
    for tab, draw in zip(tabs, sections):
        with tab:
            try:
                draw()
            except ENGINE_ERRORS as exc:
                st.error(str(exc))
    state.remember(WIDGETS)


ensure_app_navigation()
main()
