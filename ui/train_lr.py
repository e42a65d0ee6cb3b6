"""Section 3 of the Train page: the learning-rate finder's curve, live while it runs, then
clickable: a point, a marker or a "Use …" button sets the rate (through ui.train_settings.use_lr)."""
from __future__ import annotations

import streamlit as st

from engine.events import LRFindResultDict
from engine.jobs import Job
from engine.jobs.run_jobs import live_message
from ui import state, train_figs
from ui.figures import ReadyFigure
from ui.job_panel import cancel_button, notes
from ui.train_settings import use_lr

LR_FINDER_INTRO = ("Trains for about 100 mini-batches while the learning rate grows exponentially, "
                   "then puts the model back as it was. Pick a rate where the loss still falls "
                   "steeply — well before the bottom, where it is about to blow up.")


def take_in_lr_find(job: Job) -> None:
    """Keep the finder's curve; its valley becomes the rate used next."""
    res: LRFindResultDict = job.result or {}
    if res.get("lrs"):
        st.session_state[state.T_LR_FIND] = {k: res[k] for k in ("lrs", "losses", "suggestions")}
        if res.get("suggestions", {}).get("valley"):
            use_lr(res["suggestions"]["valley"])


def _on_pick_lr() -> None:
    """A click on the LR-finder curve or a marker sets the learning rate used next."""
    sel = st.session_state.get(state.T_LR_PICK) or {}
    points = (sel.get("selection") or {}).get("points") or []
    if points and points[0].get("x"):
        use_lr(float(points[0]["x"]))


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
        col.button(f"Use {name}: {lr:.1e}", key=state.T_USE_LR.format(name), on_click=use_lr,
                   args=(lr,))
    st.caption("Click a point of the curve or a marker, or a button, to use that learning rate. "
               "valley: a point in the longest downhill stretch (a good default); steep: where the "
               "loss falls fastest; minimum: a tenth of the lowest point; slide: where the curve "
               "flattens before it rises.")


__all__ = ["take_in_lr_find", "lr_live", "lr_result", "LR_FINDER_INTRO"]
