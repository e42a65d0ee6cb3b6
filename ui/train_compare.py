"""Section 7 of the Train page: 2–4 saved runs side by side — their loss and error-rate curves on
one chart each, and a table of the settings that differ (engine.compare)."""
from __future__ import annotations

import math
import time

import pandas
import streamlit as st

from engine.compare import MAX_RUNS, check_count, differing_settings, epoch_curves
from engine.runs import RunError, list_runs, load_run
from ui import compare_figs, state
from ui.figures import ReadyFigure


def _label(run: object) -> str:
    err = run.metrics.get("error_rate", math.nan)  # type: ignore[attr-defined]
    shown = f"error {err:.2%}" if isinstance(err, float) and math.isfinite(err) else "no validation set"
    when = time.strftime("%H:%M:%S", time.localtime(run.created))  # type: ignore[attr-defined]
    return f"{when} · {run.arch} · {shown} · {run.id[:6]}"  # type: ignore[attr-defined]


def compare_section() -> None:
    """Pick runs (the two newest at first), then their curves and the settings that differ."""
    st.subheader("7 · Runs side by side")
    runs = list_runs(state.owner_token())
    if len(runs) < 2:
        st.caption("Train at least two runs (for instance two of the lesson's experiments) to "
                   "put their curves side by side.")
        return
    labels = {r.id: _label(r) for r in runs}
    picked = [i for i in (st.session_state.get(state.T_COMPARE) or []) if i in labels]
    st.session_state[state.T_COMPARE] = picked or [r.id for r in runs[:2]]
    chosen = st.multiselect(f"Runs to compare (2–{MAX_RUNS})", list(labels), key=state.T_COMPARE,
                            format_func=labels.get, max_selections=MAX_RUNS)
    problem = check_count(len(chosen))
    if problem:
        st.info(problem)
        return
    try:
        loaded = [load_run(i) for i in chosen]
    except RunError as exc:
        st.error(str(exc))
        return
    names = [f"run {k + 1} ({r.info.id[:6]})" for k, r in enumerate(loaded)]
    curves = [epoch_curves(r.history) for r in loaded]
    left, right = st.columns(2)
    left.plotly_chart(ReadyFigure(compare_figs.loss_figure(names, curves)),
                      key=state.T_COMPARE_FIG.format("loss"))
    right.plotly_chart(ReadyFigure(compare_figs.error_figure(names, curves)),
                       key=state.T_COMPARE_FIG.format("error"))
    diff = differing_settings([r.settings for r in loaded])
    columns = {}
    for k, (name, c) in enumerate(zip(names, curves)):
        err = c["error_rate"][-1] if c["error_rate"] else math.nan
        columns[name] = [f"{err:.2%}" if math.isfinite(err) else "no validation set"] \
            + [values[k] for values in diff.values()]
    with st.container(key=state.T_COMPARE_TABLE.replace(".", "-")):   # CSS .st-key-<key>
        st.table(pandas.DataFrame(columns, index=["final error rate", *diff]))
    st.caption("The table lists only the settings that differ between these runs"
               + ("." if diff else ": here none do — the runs differ only by chance (a seed, "
                  "a reloaded run)."))


__all__ = ["compare_section"]
