"""The Train page's regularisation widgets (weight decay, head dropout) and the lesson's four
failure runs, one button each (engine.experiments): each trains the current settings with the
experiment's overrides, says what symptom to expect, and the coach then names what it saw."""
from __future__ import annotations

import streamlit as st

from engine.events import DataSet
from engine.experiments import LIST, apply_experiment, describe
from engine.jobs import Job
from engine.jobs.run_jobs import train_job
from engine.settings import FIELD_RULES, RunSettings
from ui import state
from ui.job_panel import JobPanel

WD_HELP = ("Weight decay: every step also shrinks each weight a little towards zero (decoupled, as "
           "fastai's AdamW: by lr × wd × weight). Large weights are what a model needs to bend "
           "around single training images, so this fights memorising. fastai's default is 0.01; "
           "0 turns it off.")
PS_HELP = ("Dropout in the new head (fastai's ps): while training, each feature going into the "
           "head's last layer is zeroed with probability ps (half that before its first layer), so "
           "the head cannot rely on any single one. Off when validating and predicting. fastai's "
           "default is 0.5; 0 turns it off.")


def regularisation_widgets() -> None:
    """Weight decay and head dropout, with a line on what they are for."""
    c1, c2, c3 = st.columns([1, 1, 2])
    wd, ps = FIELD_RULES["wd"], FIELD_RULES["ps"]
    c1.number_input("Weight decay (wd)", float(wd.lo), float(wd.hi), step=0.01, format="%.4g",
                    key=state.T_WD, help=WD_HELP)
    c2.slider("Head dropout (ps)", float(ps.lo), float(ps.hi), step=0.05, key=state.T_PS,
              help=PS_HELP)
    c3.caption("Regularisation: weight decay and dropout make memorising the training images "
               "harder, so what the model learns carries over to new ones. They also make the "
               "training loss higher than the validation loss — expected, not a sign of "
               "underfitting (so is augmentation).")


def experiment_buttons(panel: JobPanel, job: Job | None, settings: RunSettings,
                       ds: DataSet | None, lr_find: dict | None) -> None:
    """One button per experiment: trains the current settings with its overrides at once."""
    st.markdown("**The lesson's experiments — what goes wrong, one click each**")
    st.caption("Each trains a fresh model on the current data set with your settings plus one "
               "change (below), so you can see the symptom and what the coach makes of it. "
               "Put the runs side by side in section 7.")
    cols = st.columns(len(LIST))
    for col, exp in zip(cols, LIST):
        with col:
            if st.button(exp.title, key=state.T_EXPERIMENT.format(exp.name),
                         disabled=panel.busy(job) or ds is None or settings.method == "unfreeze",
                         use_container_width=True):
                panel.submit("train", train_job, apply_experiment(settings, exp.name),
                             state.owner_token(), lr_find)
                # The coach says whether it saw the symptom of this run (its job id).
                st.session_state[state.T_EXP_NOTE] = {"name": exp.name,
                                                      "job_id": st.session_state.get(state.T_JOB)}
                st.rerun()
            st.caption(f"Sets `{describe(exp.overrides)}`")
            with st.expander("What to expect"):
                st.write(exp.symptom)
    if settings.method == "unfreeze":
        st.caption("The experiments train a fresh model: choose fit_one_cycle or fine_tune.")


__all__ = ["regularisation_widgets", "experiment_buttons", "WD_HELP", "PS_HELP"]
