"""Section 3 of the Train page: the learning-rate finder's curve, live while it runs, then
clickable: a point, a marker or a "Use …" button sets the rate (through ui.train_settings.use_lr)."""
from __future__ import annotations

import streamlit as st

from engine.events import LRFindResultDict
from engine.runs import RunError, load_run
from engine.jobs import Job
from engine.jobs.run_jobs import live_message
from ui import state, train_figs
from ui.figures import ReadyFigure
from ui.job_panel import cancel_button, notes
from ui.train_settings import round_lr, use_lr

LR_FINDER_INTRO = ("Trains for about 100 mini-batches while the learning rate grows exponentially, "
                   "then puts the model back as it was. Pick a rate where the loss still falls "
                   "steeply — well before the bottom, where it is about to blow up.")


LO_RANGE = (1e-8, 1.0)      # what the "lo" widget of slice(lo, hi) accepts
UNFREEZE_RULE = ("After unfreezing, the finder's pick can go to either end of slice(lo, hi). The "
                 "lesson's rule of thumb: lo = the finder's value now (the earliest layers, "
                 "which already know edges, move least), hi = a tenth of the rate the frozen "
                 "stage trained with (the head is nearly trained, so it too moves gently).")


def _unfreezing() -> bool:
    return state.get(state.T_METHOD) == "unfreeze"


def use_lo(value: float) -> None:
    """The one writer of slice(lo, hi)'s lo (rounded as the widget shows it, kept in range)."""
    state.set_value(state.T_LR_LO, min(max(round_lr(value), LO_RANGE[0]), LO_RANGE[1]))


def frozen_rate() -> float:
    """The rate the frozen stage trained with: the last run's own, else the rate on the page."""
    run_id = (st.session_state.get(state.T_LAST_RESULT) or {}).get("run_id")
    if run_id:
        try:
            lr = load_run(run_id).settings.get("lr")
            if isinstance(lr, (int, float)) and lr > 0:
                return float(lr)
        except (RunError, OSError):
            pass
    return float(state.get(state.T_LR))


def lesson_slice(valley: float) -> None:
    """The lesson's default after unfreezing: lo = the finder's valley, hi = frozen rate ÷ 10."""
    hi = frozen_rate() / 10
    use_lo(valley)
    use_lr(hi)
    st.session_state[state.T_LR_PICKED] = float(valley)


def take_in_lr_find(job: Job) -> None:
    """Keep the finder's curve; its valley becomes the rate used next (after unfreezing: lo, with
    hi a tenth of the frozen stage's rate, as the lesson does)."""
    res: LRFindResultDict = job.result or {}
    if res.get("lrs"):
        st.session_state[state.T_LR_FIND] = {k: res[k] for k in ("lrs", "losses", "suggestions")}
        valley = res.get("suggestions", {}).get("valley")
        if valley and _unfreezing():
            lesson_slice(valley)
        elif valley:
            use_lr(valley)


def _pick(value: float) -> None:
    """A rate chosen on the finder: used next, or after unfreezing held until a button places it."""
    if _unfreezing():
        st.session_state[state.T_LR_PICKED] = float(value)
    else:
        use_lr(value)


def _on_pick_lr() -> None:
    """A click on the LR-finder curve or a marker picks that learning rate."""
    sel = st.session_state.get(state.T_LR_PICK) or {}
    points = (sel.get("selection") or {}).get("points") or []
    if points and points[0].get("x"):
        _pick(float(points[0]["x"]))


def lr_live(job: Job) -> None:
    """The finder's curve while it runs, with its progress and a Cancel button."""
    events = job.events()
    pts = [e for e in events if e["kind"] == "lr_find"]
    stage = next((e["message"] for e in reversed(events) if e["kind"] == "stage"), "")
    st.progress(job.progress, text=f"{stage}: step {len(pts)}" if pts else
                live_message(events, job.message, stage or "Starting…"))
    for note in notes(events):
        st.info(note)
    st.plotly_chart(ReadyFigure(train_figs.lr_find_figure(
        [p["lr"] for p in pts], [p["smooth_loss"] for p in pts], running=True)),
        key=state.T_LR_LIVE_FIG)
    cancel_button(job, "Cancel", state.T_LR_CANCEL)


def lr_result() -> None:
    """The last finder's curve, clickable, with a button per suggestion."""
    res = st.session_state.get(state.T_LR_FIND)
    if not res:
        return
    st.plotly_chart(ReadyFigure(train_figs.lr_find_figure(res["lrs"], res["losses"],
                                                          res["suggestions"],
                                                          chosen=float(state.get(state.T_LR)))),
                    key=state.T_LR_PICK, on_select=_on_pick_lr, selection_mode="points")
    sug = {k: v for k, v in res["suggestions"].items() if v}
    cols = st.columns(len(sug) or 1)
    for col, (name, lr) in zip(cols, sug.items()):
        col.button(f"{'Pick' if _unfreezing() else 'Use'} {name}: {lr:.1e}",
                   key=state.T_USE_LR.format(name), on_click=_pick, args=(lr,))
    if _unfreezing():
        slice_buttons(sug.get("valley"))
    st.caption("Click a point of the curve or a marker, or a button, to use that learning rate. "
               "valley: a point in the longest downhill stretch (a good default); steep: where the "
               "loss falls fastest; minimum: a tenth of the lowest point; slide: where the curve "
               "flattens before it rises.")


def slice_buttons(valley: float | None) -> None:
    """After unfreezing: put the pick into lo or hi of slice(lo, hi), or apply the lesson's rule."""
    picked = st.session_state.get(state.T_LR_PICKED) or valley
    st.caption(UNFREEZE_RULE)
    cols = st.columns(3)
    if picked:
        cols[0].button(f"Put {picked:.1e} in lo (earliest layers)", key=state.T_LR_TO.format("lo"),
                       on_click=use_lo, args=(picked,))
        cols[1].button(f"Put {picked:.1e} in hi (the head)", key=state.T_LR_TO.format("hi"),
                       on_click=use_lr, args=(picked,))
    if valley:
        cols[2].button(f"Lesson's rule: lo = {valley:.1e}, hi = {frozen_rate() / 10:.1e}",
                       key=state.T_LR_LESSON, on_click=lesson_slice, args=(valley,))
    lo, hi = float(state.get(state.T_LR_LO)), float(state.get(state.T_LR))
    st.markdown(f"Now: **slice({lo:.2e}, {hi:.2e})**")
    if lo > hi:
        st.warning("lo is larger than hi: the earliest layers would learn faster than the head. "
                   "Put the smaller rate in lo.")


__all__ = ["take_in_lr_find", "lr_live", "lr_result", "LR_FINDER_INTRO", "use_lo", "frozen_rate",
           "lesson_slice", "slice_buttons"]
