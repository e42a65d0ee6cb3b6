"""Sections 4–6 of the Train page: the training widgets, precompute, the schedule preview (the
engine's own plan of the run), the live and finished curves, the coach, and the saved runs."""
from __future__ import annotations

import math
import time
from typing import Any

import streamlit as st

from engine.data import DataError
from engine.data.summary import batches_per_epoch
from engine.errors import TrainingError
from engine.events import DataSet, TrainResult
from engine.jobs import CANCELLED, RUNNING, Job
from engine.jobs.run_jobs import eta, live_message
from engine.runs import RunError, list_runs, load_run
from engine.models import n_param_groups
from engine.schedule import RunPlan, plan_run
from engine.settings import RunSettings, precompute_note, precompute_reason
from ui import state, train_figs
from ui.figures import ReadyFigure
from ui.job_panel import cancel_button, notes
from ui.train_data import current_counts
from ui.train_settings import on_lr_widget

METHOD_LABELS = {"fit_one_cycle": "fit_one_cycle (one-cycle schedule)",
                 "fine_tune": "fine_tune (head first, then all layers)",
                 "unfreeze": "unfreeze + slice(lo, hi) (continue the last run)"}
PRECOMPUTE_LABEL = "Precompute body features (precompute=True)"
PRECOMPUTE_HELP = ("Runs the frozen pretrained body once over every image and keeps what it "
                   "outputs; the epochs then train only the head on those stored features. Same "
                   "model as the long way, but seconds instead of minutes on a CPU. It only works "
                   "while the body is frozen and augmentation is off: otherwise the body's output "
                   "changes from epoch to epoch.")


def method_widgets() -> None:
    """Method, epochs and learning rate(s), with a line on what the method does."""
    c1, c2, c3 = st.columns([3, 1, 2])
    c1.radio("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key=state.T_METHOD)
    method = state.get(state.T_METHOD)
    c2.number_input("Epochs", 1, 100, key=state.T_EPOCHS)
    if method == "fine_tune":
        c2.number_input("Frozen epochs", 0, 10, key=state.T_FREEZE_EPOCHS)
    c3.number_input("Learning rate" + (" (hi, the head)" if method == "unfreeze" else ""),
                    1e-7, 10.0, format="%.2e", step=1e-4, key=state.T_LR, on_change=on_lr_widget)
    if method == "unfreeze":
        c3.number_input("lo (earliest layers)", 1e-8, 1.0, format="%.2e", step=1e-6,
                        key=state.T_LR_LO)
        st.caption("Unfreezing trains every layer of the last run's model. Early layers already "
                   "know edges and textures, so they get smaller rates: slice(lo, hi) spreads "
                   "them from lo (first layers) to hi (the head).")
    elif method == "fine_tune":
        st.caption("fine_tune: the frozen epochs train only the new head at the rate above; then "
                   "every layer trains with slice(rate/200, rate/2).")
    elif state.get(state.T_PRETRAINED):
        st.caption("With pretrained weights, fit_one_cycle trains only the new head (the body "
                   "stays frozen), as in the lesson.")


def precompute_setting(settings: RunSettings) -> None:
    """The precompute checkbox; greyed, with the reason below it, when the settings rule it out."""
    reason = precompute_reason(settings)
    if reason is None:
        st.checkbox(PRECOMPUTE_LABEL, key=state.T_PRECOMPUTE, help=PRECOMPUTE_HELP)
        note = precompute_note(settings.with_(precompute=True))
        if note:
            st.caption(note)
    else:
        # Drawn unticked under its own key; the learner's choice waits under keep: (ui.state) and
        # comes back when precompute applies again. The widget's own value would go stale.
        st.session_state.pop(state.T_PRECOMPUTE, None)
        st.checkbox(PRECOMPUTE_LABEL, value=False, disabled=True, key=state.T_PRECOMPUTE_OFF,
                    help=PRECOMPUTE_HELP)
        st.caption(reason)


def preview_plan(settings: RunSettings, ds: DataSet) -> tuple[RunPlan, int]:
    """The engine's plan of the run these settings describe, and its steps per epoch. One group
    for fit_one_cycle (every group gets the same rate); for the methods with slices, as many as
    the architecture has (engine.models.n_param_groups: ResNets 3, EfficientNet-Lite0 2)."""
    counts = current_counts(ds)
    n_batches = batches_per_epoch(sum(counts["train"]), settings.bs)
    n_groups = 1 if settings.method == "fit_one_cycle" else n_param_groups(settings.arch)
    return plan_run(settings.method, settings.epochs, settings.lr, n_batches, n_groups,
                    freeze_epochs=settings.freeze_epochs, lr_lo=settings.lr_lo), n_batches


def schedule_preview(settings: RunSettings, ds: DataSet | None, job: Job | None) -> None:
    """The learning rate of each layer group and the momentum at every step, as training will
    set them; the steps a running job has taken are shaded."""
    if ds is None:
        return
    try:
        plan, n_batches = preview_plan(settings, ds)
    except (DataError, TrainingError, ValueError):
        return
    done = job_steps(job) if job is not None and job.meta.get("kind") == "train" else 0
    with st.expander("Learning-rate schedule", expanded=False):
        st.plotly_chart(ReadyFigure(train_figs.schedule_figure(plan.lrs, plan.moms, n_batches,
                                                               plan.group_names, done)),
                        key=state.T_SCHED_FIG)
        st.caption("One-cycle: the rate warms up from rate/25 to the peak, then anneals "
                   "to almost zero; momentum does the opposite.")


def job_steps(job: Job) -> int:
    return sum(1 for e in job.events() if e["kind"] == "batch")


# ------------------------------------------------------------------------------------------------


def take_in_train(job: Job) -> None:
    """Keep what the finished (or cancelled) run needs for its curves, the coach and unfreeze."""
    res: TrainResult = job.result or {}
    if not res:
        return
    starts = [e for e in job.events() if e["kind"] == "fit_start"]
    st.session_state[state.T_LAST_RESULT] = {
        "kind": "train", "job_id": job.id, "epochs": res["epochs"], "batches": res["batches"],
        "cancelled": res["cancelled"] or job.status == CANCELLED, "run_id": res.get("run_id"),
        "total_steps": sum(s["total_steps"] for s in starts) or None,
        "total_epochs": sum(s["epochs"] for s in starts) or None, "seconds": res["seconds"],
        "precompute": res.get("precompute"), "notes": notes(job.events()),
        "training": res.get("training"),
        # what the coach reads besides the curves (engine.coach.diagnose)
        "fit": res.get("fit"), "settings": res.get("settings"), "lr_find": res.get("lr_find")}


def train_live(job: Job) -> None:
    """Progress with the time left, notes, Cancel, and the curves so far."""
    events = job.events()
    batches = [e for e in events if e["kind"] == "batch"]
    epochs = [e for e in events if e["kind"] == "epoch"]
    starts = [e for e in events if e["kind"] == "fit_start"]
    stage = next((e["message"] for e in reversed(events) if e["kind"] == "stage"), "Starting")
    if job.status == RUNNING:
        first = next((e["time"] for e in events if e["kind"] == "fit_start"), None)
        frac = job.progress
        text = live_message(events, job.message, stage)
        if first is not None and batches:
            elapsed = time.time() - first
            left = eta(frac, elapsed)
            text = (f"{stage} · epoch {batches[-1]['epoch'] + 1} of "
                    f"{sum(s['epochs'] for s in starts)} ({batches[-1]['stage']}) · {frac:.0%} · "
                    f"{train_figs.fmt_time(elapsed)} elapsed"
                    + (f" · about {train_figs.fmt_time(left)} left" if left is not None else ""))
        st.progress(frac, text=text)
    for note in notes(events):
        st.info(note)
    cancel_button(job, "Cancel", state.T_CANCEL, help="Stops before the next batch; the model goes "
                  "back to the end of its last finished epoch, which is saved as a run.")
    draw_training(epochs, batches, sum(s["total_steps"] for s in starts) or None,
                  sum(s["epochs"] for s in starts) or None, live=True)


def last_training(last: dict[str, Any]) -> None:
    """The finished run's notes and curves."""
    for note in last.get("notes") or []:
        st.info(note)
    pre = last.get("precompute") or {}
    if pre.get("used"):
        st.caption(f"The head trained on precomputed body features (computed once, in "
                   f"{pre['seconds']:.1f} s).")
    if training := last.get("training"):
        st.caption(how_it_trained(training))
    draw_training(last["epochs"], last["batches"], last.get("total_steps"),
                  last.get("total_epochs"), live=False)


def how_it_trained(training: dict[str, Any]) -> str:
    """One line on a finished run's arithmetic, parameter groups and frozen batch norm."""
    groups = training.get("param_groups") or []
    text = (f"Trained in {training.get('precision') or 'fp32'}"
            + (f"; {len(groups)} parameter groups ({', '.join(groups)}), each with its own "
               "learning rate" if len(groups) > 1 else "")
            + ("; a frozen body's batch norm adapts to the data (train_bn)"
               if training.get("train_bn") else "; a frozen body's batch norm stays fixed") + ".")
    if training.get("not_repeatable"):
        text += " " + training["not_repeatable"]
    return text


def draw_training(epochs: list, batches: list, total_steps: int | None,
                  total_epochs: int | None, live: bool) -> None:
    suffix = "_live" if live else ""
    a, b = st.columns(2)
    a.plotly_chart(ReadyFigure(train_figs.batch_loss_figure(batches, total_steps)),
                   key=state.T_LOSS_FIG.format(suffix))
    b.plotly_chart(ReadyFigure(train_figs.epoch_figure(epochs, total_epochs)),
                   key=state.T_EPOCH_FIG.format(suffix))
    if epochs:
        st.dataframe(train_figs.epoch_table(epochs), hide_index=True,
                     key=state.T_TABLE.format(suffix))


# ------------------------------------------------------------------------------------------------


def coach_section() -> None:
    """The coach (now in ui/train_coach.py, which the page calls); kept for existing imports."""
    from ui.train_coach import coach_section as draw
    draw()


def _clock(created: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(created))


NO_VALID = "no validation set"


def _metric(metrics: dict, name: str, fmt: str) -> str:
    """A run's metric as text; a run without validation images has NaN metrics, said in words."""
    value = metrics.get(name, math.nan)
    if value is None or not math.isfinite(float(value)):
        return NO_VALID
    return fmt.format(value)


def _where(run: Any) -> str:
    """Which process trained a run: "Ray worker on gpu-1 (pid 4242)", "the server on vm (pid 17)"."""
    who = "Ray worker" if run.backend == "ray" else "the server"
    return f"{who} on {run.host} (pid {run.pid})" if run.pid else who


def runs_section() -> None:
    st.subheader("6 · Runs")
    runs = list_runs(state.owner_token())
    if not runs:
        st.caption("Each finished or cancelled training run is saved here with its model, "
                   "validation predictions and curves.")
        return
    table = {"when": [_clock(r.created) for r in runs],
             "data": [r.data for r in runs], "arch": [r.arch for r in runs],
             "epochs": [r.epochs for r in runs], "status": [r.status for r in runs],
             "error_rate": [_metric(r.metrics, "error_rate", "{:.2%}") for r in runs],
             "valid_loss": [_metric(r.metrics, "valid_loss", "{:.4f}") for r in runs],
             "trained by": [_where(r) for r in runs], "id": [r.id for r in runs]}
    st.dataframe(table, hide_index=True, key=state.T_RUNS_TABLE)
    labels = {r.id: f"{_clock(r.created)} · {r.data} · {r.arch} · "
                    + ("no validation set" if _metric(r.metrics, "error_rate", "") == NO_VALID
                       else f"error {_metric(r.metrics, 'error_rate', '{:.2%}')}")
                    + f" · {r.id[:6]}" for r in runs}
    pick = st.selectbox("Run", list(labels), key=state.T_RUN_PICK, format_func=labels.get)
    c1, c2 = st.columns([1, 3])
    if c1.button("Reload this run", key=state.T_RUN_RELOAD):
        try:
            run = load_run(pick)
            hist = run.history
            st.session_state[state.T_LAST_RESULT] = {
                "kind": "train", "job_id": None, "epochs": hist.get("epochs", []),
                "batches": hist.get("batches", []), "cancelled": run.info.status == "cancelled",
                "run_id": run.info.id, "total_steps": None, "total_epochs": None,
                "precompute": hist.get("precompute"), "fit": hist.get("fit"),
                "settings": run.settings, "lr_find": hist.get("lr_find")}
            if hist.get("lr_find"):
                st.session_state[state.T_LR_FIND] = hist["lr_find"]
            st.rerun()
        except RunError as exc:
            st.error(str(exc))
    base = (st.context.url or "").split("?")[0].rstrip("/")
    base = base.rsplit("/", 1)[0] if base.endswith("/train") else base
    c2.markdown("Share link — opens this run in the Explorer, read-only:")
    c2.code(f"{base}/explore?run={pick}", language=None)


__all__ = ["METHOD_LABELS", "PRECOMPUTE_LABEL", "method_widgets", "precompute_setting",
           "preview_plan", "schedule_preview", "take_in_train", "train_live", "last_training",
           "draw_training", "coach_section", "runs_section"]
