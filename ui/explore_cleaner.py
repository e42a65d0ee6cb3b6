"""The Explorer's "Clean" tab: the hardest images of one class, a keep / delete / move decision
for each, Apply and Undo (engine.cleaner does the moving), and the hand-off to retrain."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from engine import cleaner, interpret
from engine.runs import Run, owns_data
from ui import state
from ui.explore_common import ENGINE_ERRORS, GRID, THUMB, checkpoint, md, thumb
from ui.explore_mistakes import no_validation

TRAIN_CAP = 300             # most training images of one class scored for the cleaner
Row = tuple[str, float, int]   # (path, loss, predicted class)


def _decisions(run: Run) -> dict[str, str]:
    return st.session_state[state.E_DECISIONS].setdefault(run.info.id, {})


def _on_decision(run_id: str, path: str, key: str) -> None:
    # After Apply the widget keys are dropped, but the browser may still report the old value
    # once; such an echo has nothing to record.
    value = st.session_state.get(key)
    if value is not None:
        st.session_state[state.E_DECISIONS].setdefault(run_id, {})[path] = value


def _forget_choices(run: Run) -> None:
    st.session_state[state.E_DECISIONS][run.info.id] = {}
    st.session_state[state.E_TRAIN_LOSSES] = {}
    prefix = state.E_DECISION.format("")
    for key in [k for k in st.session_state if str(k).startswith(prefix)]:
        del st.session_state[key]


def cleaner_items(run: Run, root: Path, split: str, cls: int) -> list[Row]:
    """(path, loss, predicted class) of one class and side, largest loss first; files that are
    no longer there (cleaned away) are left out. Training images are scored on first use and
    kept for the session."""
    if split == "valid":
        idx = np.flatnonzero(run.targets == cls)
        rows = [(run.items[i][0], float(run.losses[i]), int(run.probs[i].argmax())) for i in idx]
    else:
        cache = st.session_state[state.E_TRAIN_LOSSES]
        key = (run.info.id, cls)
        if key not in cache:
            files = cleaner.training_files(root, run.classes[cls], exclude=[p for p, _ in run.items])
            ckpt = checkpoint(run)
            with st.spinner(f"Scoring {min(len(files), TRAIN_CAP)} training images with the model…"):
                ok, probs, losses = interpret.predict_files(
                    ckpt.model, files[:TRAIN_CAP], cls, size=int(ckpt.meta["size"]),
                    mean=ckpt.meta["mean"], std=ckpt.meta["std"])
            cache[key] = [(p, float(l), int(pr.argmax())) for p, l, pr in zip(ok, losses, probs)]
        rows = cache[key]
    return cleaner.hardest_first(rows)


def _decision_grid(run: Run, rows: list[Row], cls_name: str, n_show: int, read_only: bool) -> None:
    """A thumbnail and a decision box per image; choices go to state.E_DECISIONS as they are made."""
    decisions = _decisions(run)
    options = [cleaner.KEEP, cleaner.DELETE] + [cleaner.relabel(c) for c in run.classes
                                                if c != cls_name]
    fmt = {cleaner.KEEP: "keep", cleaner.DELETE: "delete (quarantine)",
           **{cleaner.relabel(c): f"move to {c}" for c in run.classes}}
    with st.container(key=state.E_CLEAN_GRID):
        for start in range(0, min(len(rows), n_show), GRID):
            cols = st.columns(GRID)
            for col, (path, loss, pred) in zip(cols, rows[start:start + GRID]):
                with col:
                    picture = thumb(path)
                    if picture is not None:
                        st.image(picture, width=THUMB)
                    st.caption(f"{md(Path(path).name)} · loss {max(loss, 0.0):.3f} · predicted "
                               f"**{md(run.classes[pred])}**")
                    key = state.E_DECISION.format(hashlib.sha1(path.encode()).hexdigest()[:16])
                    if key not in st.session_state or st.session_state[key] not in options:
                        chosen = decisions.get(path, cleaner.KEEP)
                        st.session_state[key] = chosen if chosen in options else cleaner.KEEP
                    st.selectbox("Decision", options, key=key, format_func=fmt.get,
                                 label_visibility="collapsed", disabled=read_only,
                                 on_change=_on_decision, args=(run.info.id, path, key))


def _apply(run: Run, root: Path, owner: str, pending: dict[str, str]) -> None:
    try:
        journal = cleaner.apply_decisions(root, pending, classes=run.classes, owner=owner,
                                          run_owner=run.info.owner, run_id=run.info.id,
                                          skip_vanished=True)
    except cleaner.CleanError as exc:
        st.session_state[state.E_CLEAN_MSG] = ("error", str(exc))
    else:
        # Every choice is settled now, stale ones included (engine.cleaner left out the files
        # that had gone and says so), so none of them can block a later Apply.
        _forget_choices(run)
        if journal.moves:   # a journal that moved nothing is not saved, so there is no Undo
            st.session_state[state.E_JOURNAL][run.info.id] = journal.id
            st.session_state[state.E_CLEAN_MSG] = ("success", f"Applied: {journal.summary()} "
                                                   "Deleted files are in a quarantine folder; "
                                                   "Undo brings every file back.")
        else:
            st.session_state[state.E_CLEAN_MSG] = ("info", f"Nothing was moved: "
                                                   f"{journal.summary()}")
    st.rerun()


def _undo(run: Run, owner: str, journal_id: str) -> None:
    try:
        journal = cleaner.undo(journal_id, owner=owner)
    except cleaner.CleanError as exc:
        st.session_state[state.E_CLEAN_MSG] = ("error", str(exc))
    else:
        st.session_state[state.E_JOURNAL].pop(run.info.id, None)
        st.session_state[state.E_TRAIN_LOSSES] = {}
        st.session_state[state.E_CLEAN_MSG] = ("success", f"Undone: every file is back where it "
                                           f"was ({len(journal.moves)} moved back).")
    st.rerun()


def _retrain(run: Run, root: Path) -> None:
    # The Train page reads this settings dict (its shape is the Train page's contract).
    st.session_state[state.E_RETRAIN] = {**run.settings, "arch": run.info.arch,
                                     "data": run.info.data, "data_folder": str(root),
                                     "from_run": run.info.id}
    try:
        st.switch_page("pages/train.py")
    except Exception:  # no Train page in this copy of the app, or not in the navigation
        st.info("The settings are saved for the Train page, but it is not available here.")


def clean_section(run: Run, owner: str, read_only: bool) -> None:
    """The cleaner: read-only for a shared run and for data other sessions share."""
    st.write("Look at the images the model found hardest, class by class. Keep an image, delete it "
             "(it is moved to a quarantine folder, never erased) or move it to the class it really "
             "belongs to. Your choices stay while you switch class or side; Apply carries them out "
             "and Undo puts every file back.")
    if read_only:
        st.info("This run was shared with you, so its data cannot be changed here. You can still "
                "look at its images below.")
    if no_validation(run):   # no item to find the data folder from, and nothing scored
        return
    try:
        root = cleaner.data_root([p for p, _ in run.items])
    except cleaner.CleanError as exc:
        st.error(str(exc))
        return
    if not read_only and not owns_data(root, owner):
        read_only = True
        st.info("This run was trained on a data set every user of this server shares, so it cannot "
                "be cleaned here: a change would reach everyone. Upload your own copy as a zip on "
                "the Train page (or make a demo run) to clean it.")
    msg = st.session_state.pop(state.E_CLEAN_MSG, None)
    if msg:
        {"success": st.success, "info": st.info}.get(msg[0], st.error)(msg[1])
    c = st.columns([1, 2, 1])
    split = c[0].radio("Side", ["valid", "train"], key=state.E_CLEAN_SPLIT, horizontal=True,
                       format_func={"valid": "validation", "train": "training"}.get)
    if state.get(state.E_CLEAN_CLASS) not in run.classes:
        state.set_value(state.E_CLEAN_CLASS, run.classes[0])
    cls_name = c[1].selectbox("Class folder", run.classes, key=state.E_CLEAN_CLASS)
    n_show = c[2].number_input("Images shown", 4, 96, step=4, key=state.E_CLEAN_N)
    try:
        rows = cleaner_items(run, root, split, run.classes.index(cls_name))
    except ENGINE_ERRORS as exc:
        st.error(f"The images of this class could not be scored: {exc}")
        rows = []
    if not rows:
        st.write("No images left in this class folder.")
    _decision_grid(run, rows, cls_name, int(n_show), read_only)
    pending = {p: d for p, d in _decisions(run).items() if d != cleaner.KEEP}
    st.write(f"**{len(pending)}** change{'s' * (len(pending) != 1)} chosen "
             f"({sum(d == cleaner.DELETE for d in pending.values())} to delete, "
             f"{sum(d.startswith(cleaner.MOVE) for d in pending.values())} to move).")
    b = st.columns([1, 1, 2])
    if b[0].button("Apply", type="primary", key=state.E_APPLY, disabled=read_only or not pending):
        _apply(run, root, owner, pending)
    journal_id = st.session_state[state.E_JOURNAL].get(run.info.id)
    if b[1].button("Undo", key=state.E_UNDO, disabled=read_only or not journal_id):
        _undo(run, owner, journal_id)
    if b[2].button("Retrain with the cleaned data", key=state.E_RETRAIN_GO, disabled=read_only):
        _retrain(run, root)
    st.caption(f"Data folder: {md(root)}")
