"""Train: data, model, LR finder, training with live curves (and the lesson's experiments), the
coach, saved runs, and runs side by side.

The page in one pass: the widgets of each section (ui/train_*.py) -> one RunSettings built from
their values (ui/train_settings.run_settings) -> engine jobs submitted through the job panel
(ui/job_panel.py), which watches them in fragments, so touching a widget never stops training ->
the results drawn with the figures of ui/train_figs.py.
"""
from __future__ import annotations

import streamlit as st

from engine.events import DataSet
from engine.jobs import Job
from engine.jobs.run_jobs import lr_find_job, train_job
from engine.settings import RunSettings
from ui import state, train_data, train_experiments, train_lr, train_model, train_run, urlstate
from ui.train_coach import coach_section
from ui.train_compare import compare_section
from ui.job_panel import TRAIN_POLL_S, JobPanel
from ui.nav import ensure_app_navigation
from ui.train_code import code_section
from ui.train_settings import PAGE, init_state, run_settings, widget_keys

#: The page's background jobs, by kind, and what the session keeps of each when it ends.
PANEL = JobPanel(job_key=state.T_JOB, consumed_key=state.T_CONSUMED, error_key=state.T_JOB_ERROR,
                 on_result={"download": train_data.take_in_download,
                            "lr_find": train_lr.take_in_lr_find,
                            "train": train_run.take_in_train},
                 error_keys={"download": state.T_DATA_ERROR})
UNFREEZE_FIRST = ("Unfreezing continues a trained model: train first with fit_one_cycle or "
                  "fine_tune.")


def lr_finder_section(job: Job | None, settings: RunSettings, ds: DataSet | None) -> None:
    """3 · The LR finder: run it as a job, watch its curve grow, then pick a rate from it."""
    st.subheader("3 · Learning-rate finder")
    st.caption(train_lr.LR_FINDER_INTRO)
    if st.button("Find a learning rate", key=state.T_LR_FIND_BTN, type="primary",
                 disabled=PANEL.busy(job) or ds is None):
        PANEL.submit("lr_find", lr_find_job, settings)
        st.rerun()
    if PANEL.live(job, "lr_find", train_lr.lr_live):
        return
    train_lr.lr_result()


def train_section(job: Job | None, settings: RunSettings, ds: DataSet | None) -> None:
    """4 · Training: method and rates, precompute, the schedule the optimiser will follow, then
    the run as a job (live curves while it runs, the finished run's curves after)."""
    st.subheader("4 · Train")
    train_run.method_widgets()
    train_experiments.regularisation_widgets()
    train_run.precompute_setting(settings)
    train_run.schedule_preview(settings, ds, job)
    code_section(settings)
    if st.button("Train", key=state.T_START, type="primary",
                 disabled=PANEL.busy(job) or ds is None):
        if settings.method == "unfreeze" and not settings.start_from:
            st.error(UNFREEZE_FIRST)
        else:
            # train_job(ctx, settings, owner, lr_find_result): the LR finder's curve is kept in
            # the saved run's history.
            PANEL.submit("train", train_job, settings, state.owner_token(),
                         st.session_state.get(state.T_LR_FIND))
            st.rerun()
    train_experiments.experiment_buttons(PANEL, job, settings, ds,
                                         st.session_state.get(state.T_LR_FIND))
    if PANEL.live(job, "train", train_run.train_live, every=TRAIN_POLL_S):
        return
    last = st.session_state.get(state.T_LAST_RESULT)
    if last and last.get("kind") == "train":
        train_run.last_training(last)


def main() -> None:
    st.title("Train")
    st.write("The training loop from the SGD page, at scale: a convolutional network, mini-batches "
             "of images, the learning-rate finder and one-cycle training. Training runs in the "
             "background, so you can move sliders or switch pages while it works.")
    init_state()
    job = PANEL.current()
    if job is not None and not job.is_active:
        PANEL.take_in(job)   # it ended while nobody watched (another page, a reload)

    # 1 · Data: the source's widgets; a download runs as a job, its panel drawn until taken in.
    ds = train_data.data_section(PANEL, job)
    PANEL.live(job, "download", train_data.download_live, until_taken_in=True)
    train_data.download_report()
    # 2 · Model
    train_model.model_section()
    if st.session_state.get(state.T_JOB_ERROR):
        st.error(st.session_state[state.T_JOB_ERROR])

    # Every widget's value is in session state by now: the one RunSettings of this run.
    settings = run_settings(ds, st.session_state.get(state.T_LAST_RESULT))
    lr_finder_section(job, settings, ds)
    train_section(job, settings, ds)
    coach_section()
    train_run.runs_section()
    compare_section()
    state.remember(widget_keys())
    urlstate.sync(PAGE)


ensure_app_navigation()
main()
