"""Section 5 of the Train page: the coach's one primary finding for the last run (engine.coach),
its secondary notes, and, after one of the lesson's experiments, whether the symptom showed."""
from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from engine.coach import PRIMARY_KINDS, diagnose
from engine.experiments import EXPERIMENT_INFO
from ui import state

SHOW = {"error": st.error, "warning": st.warning, "info": st.info, "success": st.success}


def coach_section() -> None:
    """The coach's reading of the last finished (or reloaded) run."""
    last: Mapping[str, Any] | None = st.session_state.get(state.T_LAST_RESULT)
    if not last or last.get("kind") != "train":
        return
    st.subheader("5 · Coach")
    found = diagnose(last["epochs"], last["batches"], cancelled=last["cancelled"],
                     settings=last.get("settings"), lr_find=last.get("lr_find"),
                     fit=last.get("fit"))
    primary = found.primary
    if primary.kind in PRIMARY_KINDS:
        st.caption(f"The coach's finding: **{primary.kind}** (one of "
                   f"{', '.join(PRIMARY_KINDS)}). It reads the curves, the settings"
                   + (", the LR finder's curve" if last.get("lr_find") else "")
                   + (" and how well the model fits its own training images" if last.get("fit")
                      else "") + ".")
    SHOW[primary.level](f"**{primary.title}.** {primary.text}")
    experiment_verdict(last, primary.kind)
    for note in found.secondary:
        SHOW[note.level](f"**{note.title}.** {note.text}")


def experiment_verdict(last: Mapping[str, Any], kind: str) -> None:
    """After an experiment's run: the symptom it was meant to show, and whether the coach saw it."""
    ran = st.session_state.get(state.T_EXP_NOTE) or {}
    exp = EXPERIMENT_INFO.get(ran.get("name", ""))
    if exp is None or not last.get("job_id") or ran.get("job_id") != last.get("job_id"):
        return
    said = ("The coach saw it." if kind == exp.name else
            f"This time the coach read the run as **{kind}**, not {exp.name}: look at the curves "
            "above and decide for yourself.")
    st.caption(f"Experiment **{exp.title}** ({exp.name}). Expected: {exp.symptom} {said}")


__all__ = ["coach_section", "experiment_verdict"]
