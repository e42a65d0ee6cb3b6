"""Section 1 of the Train page: where the images come from (digits, Pets, a zip, URL lists, a
server folder, the Explorer's cleaned set), the validation split, the image check and the
show_batch preview. The chosen data set lives in session state as an engine.events.DataSet.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from engine.coach import validation_note
from engine.data import DataError
from engine.data.files import server_folder, server_folders
from engine.data.summary import class_counts, preview_batch
from engine.events import DataSet, DownloadResult
from engine.jobs import DONE, Job
from engine.jobs.download_jobs import ClassList, class_lists, pets_job, urls_job
from engine.paths import data_dir, session_dir
from engine.settings import RunSettings
from ui import state, train_figs
from ui.figures import ReadyFigure
from ui.job_panel import JobPanel, cancel_button
from ui.train_settings import on_source

CLEANED_LABEL = "Data cleaned in the Explorer"
SOURCES = {"digits": "Handwritten digits (built in, offline)", "pets": "Oxford-IIIT Pet",
           "zip": "Upload a zip of class folders", "urls": "Image URLs per class",
           "folder": "A folder on the server"}
URL_CLASS_NAMES = ["grizzly", "black", "teddy", "c4", "c5", "c6"]


@st.cache_resource(show_spinner=False)
def digits_path() -> str:
    from engine.data import digits_folder
    return str(digits_folder())


@st.cache_data(show_spinner=False, max_entries=32)
def counts_of(folder: str, valid_pct: float, seed: int, stamp: float) -> dict:
    return class_counts(folder, valid_pct, seed)


@st.cache_data(show_spinner=False, max_entries=32)
def preview_of(spec_key: tuple, augment: bool, stamp: float) -> np.ndarray:
    folder, size, valid_pct, seed, flip = spec_key
    settings = RunSettings(folder=folder, size=size, valid_pct=valid_pct, seed=seed, flip=flip)
    return preview_batch(settings, augment=augment)


def stamp(folder: str) -> float:
    """Changes when the folder's class folders change (cleaning, quarantine), to refresh caches."""
    p = Path(folder)
    try:
        return max([p.stat().st_mtime] + [c.stat().st_mtime for c in p.iterdir() if c.is_dir()])
    except OSError:
        return 0.0


def dataset() -> DataSet | None:
    return st.session_state.get(state.T_DATASET)


def current_counts(ds: DataSet) -> dict:
    """Images per class and split for the current validation share and seed (cached)."""
    return counts_of(ds["folder"], float(state.get(state.T_VALID_PCT)),
                     int(state.get(state.T_SEED)), stamp(ds["folder"]))


def take_in_download(job: Job) -> None:
    """A finished download's folder becomes the data set; a URL list's report is kept."""
    res: DownloadResult = job.result or {}
    if job.status != DONE:
        return
    st.session_state[state.T_DATASET] = {k: res[k] for k in ("folder", "name", "flip", "writable")}
    if res.get("report"):
        st.session_state[state.T_DL_REPORT] = {"lines": res["report"],
                                               "failed": res.get("failed", [])}


# ------------------------------------------------------------------------------------------------


def data_section(panel: JobPanel, job: Job | None) -> DataSet | None:
    """The source, its widgets, the split, the image check and the preview; returns the data set."""
    st.subheader("1 · Data")
    options = list(SOURCES) + (["cleaned"] if st.session_state.get(state.T_CLEANED) else [])
    if state.get(state.T_SOURCE) not in options:
        state.set_value(state.T_SOURCE, "digits")
    st.radio("Images to learn from", options, format_func=lambda o: SOURCES.get(o, CLEANED_LABEL),
             key=state.T_SOURCE, horizontal=True, on_change=on_source)
    source = state.get(state.T_SOURCE)
    if source == "cleaned":
        cleaned = st.session_state[state.T_CLEANED]
        st.caption(f"The data set you cleaned in the Explorer, with the settings of run "
                   f"{cleaned.get('from_run') or ''}: train again to see whether cleaning helped.")
        st.session_state[state.T_DATASET] = {k: cleaned[k]
                                             for k in ("folder", "name", "flip", "writable")}
    elif source == "digits":
        st.caption("1,797 scanned handwritten digits, 8×8 pixels, ten classes 0–9 (from "
                   "scikit-learn). Ready at once, no internet needed.")
        st.session_state[state.T_DATASET] = {"folder": digits_path(), "name": "digits",
                                             "flip": False, "writable": False}
    elif source == "pets":
        pets_source(panel, job)
    elif source == "zip":
        zip_source()
    elif source == "urls":
        urls_source(panel, job)
    else:
        folder_source()
    if st.session_state.get(state.T_DATA_ERROR):
        st.error(st.session_state[state.T_DATA_ERROR])
    ds = dataset()
    if ds is None:
        return None
    c1, c2 = st.columns(2)
    for key, default in ((state.T_VALID_PCT, 0.2), (state.T_SEED, 42)):
        # Hand the value to the widget explicitly: when these reappear in the run that follows a
        # download's live panel, the browser otherwise draws them at their minimum (0.05, 0).
        st.session_state[key] = state.get(key, default)
    c1.slider("Validation share (valid_pct)", 0.05, 0.9, step=0.05, key=state.T_VALID_PCT,
              help="Held-out images the model never trains on; they measure the error rate. A "
                   "large share leaves few images to train on: the overfitting experiment uses "
                   "0.9.")
    c2.number_input("Seed", 0, 2**31 - 1, key=state.T_SEED,
                    help="The same seed picks the same validation images every time, so runs "
                         "are compared on the same set.")
    try:
        counts = current_counts(ds)
    except DataError as exc:
        st.error(str(exc))
        st.session_state.pop(state.T_DATASET, None)
        return None
    left, right = st.columns([3, 2])
    with left:
        figure = train_figs.counts_figure(counts["classes"], counts["train"], counts["valid"])
        st.plotly_chart(ReadyFigure(figure), key=state.T_COUNTS_FIG)
        st.caption(f"{sum(counts['train']):,} training and {sum(counts['valid']):,} validation "
                   f"images in {len(counts['classes'])} classes"
                   + (" (the folder's own valid/ split)." if counts["has_valid_folder"] else
                      f" — each class holds out {float(state.get(state.T_VALID_PCT)):.0%}, chosen by "
                      "the seed."))
        note = validation_note(counts["classes"], counts["valid"])
        if note is not None:   # said before training, not read later from NaN metrics
            (st.warning if note.level == "warning" else st.info)(f"**{note.title}.** {note.text}")
    with right:
        verify_panel(ds)
    show_batch(ds)
    return ds


def show_batch(ds: DataSet) -> None:
    """The augmentation toggle and a batch of training images as the model will see them."""
    st.toggle("Augment the training images (random rotation, zoom, lighting"
              + (", flips" if ds["flip"] else "") + ")", key=state.T_AUGMENT,
              help="Each epoch the model sees a new random variation of every training image, "
                   "which helps it generalise; the batch below shows them as training will. "
                   "Validation images are never augmented.")
    spec_key = (ds["folder"], int(state.get(state.T_SIZE)), float(state.get(state.T_VALID_PCT)),
                int(state.get(state.T_SEED)), bool(ds["flip"]))
    try:
        grid = preview_of(spec_key, bool(state.get(state.T_AUGMENT)), stamp(ds["folder"]))
        st.image(grid, caption=f"show_batch: training images at {state.get(state.T_SIZE)} px, as "
                               "the model sees them" + (" (augmented — a new variation every epoch)"
                                                        if state.get(state.T_AUGMENT) else ""))
    except DataError as exc:
        st.error(str(exc))


def verify_panel(ds: DataSet) -> None:
    from engine.data import verify_images
    st.markdown("**Verify the images**")
    st.caption("Opens every file and lists the ones that are not images the app can read.")
    if st.button("Check every image", key=state.T_VERIFY_BTN):
        with st.spinner("Checking…"):
            bad = verify_images(ds["folder"])
        st.session_state[state.T_VERIFY] = {"folder": ds["folder"],
                                            "bad": [(str(p), r) for p, r in bad]}
    report = st.session_state.get(state.T_VERIFY)
    if not report or report["folder"] != ds["folder"]:
        return
    if not report["bad"]:
        st.success("Every file is a readable image.")
        return
    st.warning(f"{len(report['bad'])} files cannot be used:")
    root = Path(ds["folder"])
    st.dataframe({"file": [str(Path(p).relative_to(root)) if p.startswith(str(root)) else p
                           for p, _ in report["bad"]],
                  "reason": [r for _, r in report["bad"]]}, hide_index=True, height=160)
    if ds["writable"]:
        if st.button(f"Quarantine {len(report['bad'])} files", key=state.T_QUARANTINE):
            moved = verify_images(ds["folder"], delete=True,
                                  quarantine=session_dir(state.owner_token()) / "quarantine")
            st.session_state[state.T_VERIFY] = {"folder": ds["folder"], "bad": []}
            st.toast(f"Moved {len(moved)} files to quarantine (they can be moved back).")
            st.rerun()
    else:
        st.caption("This data set is shared, so it is read-only here: the training loader skips "
                   "these files anyway.")


# ------------------------------------------------------------------------------------ the sources


def pets_source(panel: JobPanel, job: Job | None) -> None:
    from engine.data import pets_download_size
    st.radio("Labels", ["species", "breeds"], key=state.T_PETS_LABELS, horizontal=True,
             format_func={"species": "cat or dog (2 classes)", "breeds": "37 breeds"}.get)
    labels = state.get(state.T_PETS_LABELS)
    folder = data_dir() / f"pets-{labels}"
    if folder.is_dir():
        st.session_state[state.T_DATASET] = {"folder": str(folder), "name": f"pets-{labels}",
                                         "flip": True, "writable": False}
        return
    st.session_state.pop(state.T_DATASET, None)
    st.info(pets_download_size())
    if st.button("Download Oxford-IIIT Pet", key=state.T_PETS_DL, disabled=panel.busy(job)):
        st.session_state.pop(state.T_DATA_ERROR, None)
        panel.submit("download", pets_job, labels, resource="io")
        st.rerun()


def zip_source() -> None:
    from engine.data import extract_zip
    up = st.file_uploader("A .zip holding one folder per class (or train/ and valid/ folders)",
                          type=["zip"], key=state.T_ZIP)
    if up is not None and st.button("Use this zip", key=state.T_ZIP_USE):
        name = "".join(c for c in Path(up.name).stem if c.isalnum() or c in "-_")[:40] or "upload"
        try:
            dest = extract_zip(up, session_dir(state.owner_token()) / f"zip-{name}")
            st.session_state[state.T_DATASET] = {"folder": str(dest), "name": name, "flip": True,
                                             "writable": True}
            st.session_state.pop(state.T_DATA_ERROR, None)
        except DataError as exc:
            st.session_state[state.T_DATA_ERROR] = str(exc)
    ds = dataset()
    if ds and "zip-" not in Path(ds["folder"]).name:
        st.session_state.pop(state.T_DATASET, None)


def urls_source(panel: JobPanel, job: Job | None) -> None:
    from engine.download import class_name_from_url_file
    st.caption("As in the lesson's bears: one list of image addresses per class. The class name "
               "becomes the folder name. Downloads check every address and skip files that are "
               "not images.")
    n = st.number_input("Classes", 2, 6, 2, key=state.T_URL_N)
    # Every list is kept with where it came from: a class given twice (typed and uploaded) or
    # two names that become one folder are reported by class_lists, never merged or overwritten.
    entries: list[ClassList] = []
    for i, col in enumerate(st.columns(int(n))):
        name = col.text_input("Class name", key=state.T_URL_NAME.format(i),
                              value=URL_CLASS_NAMES[i])
        text = col.text_area("URLs, one per line", key=state.T_URL_TEXT.format(i), height=120)
        entries.append((name, text.splitlines(), f"class {i + 1}"))
    files = st.file_uploader("…or upload text files named after their class (urls_teddy.txt)",
                             type=["txt"], accept_multiple_files=True, key=state.T_URL_FILES)
    for f in files or []:
        entries.append((class_name_from_url_file(f.name),
                        f.getvalue().decode("utf-8", "replace").splitlines(), f.name))
    st.caption("Each download makes a new data set of exactly these classes (the previous one "
               "is replaced when it finishes).")
    if st.button("Download the images", key=state.T_URL_DL, disabled=panel.busy(job)):
        try:
            lists = class_lists(entries)
            if len(lists) < 2:
                raise DataError("Give at least two classes, each with a name and URLs.")
        except DataError as exc:
            st.session_state[state.T_DATA_ERROR] = str(exc)
        else:
            st.session_state.pop(state.T_DATA_ERROR, None)
            st.session_state.pop(state.T_DL_REPORT, None)
            panel.submit("download", urls_job, lists, session_dir(state.owner_token()) / "urls",
                         resource="io")
            st.rerun()
    ds = dataset()
    if ds and not Path(ds["folder"]).name == "urls":
        st.session_state.pop(state.T_DATASET, None)


def folder_source() -> None:
    root = data_dir() / "folders"
    root.mkdir(parents=True, exist_ok=True)
    names = server_folders(root)     # real folders only: a link could lead anywhere on the server
    if not names:
        st.info(f"No folders yet: put a data set (one sub-folder per class) under {root} on the "
                "server, then reload.")
        st.session_state.pop(state.T_DATASET, None)
        return
    name = st.selectbox("Folder", names, key=state.T_FOLDER)
    try:
        folder = server_folder(root, name)   # checked again as it is used
    except DataError as exc:
        st.error(str(exc))
        st.session_state.pop(state.T_DATASET, None)
        return
    st.session_state[state.T_DATASET] = {"folder": str(folder), "name": name, "flip": True,
                                     "writable": False}


# ------------------------------------------------------------------------------ download progress


def download_live(job: Job) -> None:
    """What the download panel shows while the job runs."""
    st.progress(job.progress, text=job.message or "Starting the download…")
    cancel_button(job, "Cancel download", state.T_DL_CANCEL)


def download_report() -> None:
    """The last URL download's summary per class and, on request, each failed address with its
    reason. It stays, while the source is a URL list, until the next download (also when every
    address failed and there is no data set to train on)."""
    rep = st.session_state.get(state.T_DL_REPORT)
    if not rep or state.get(state.T_SOURCE) != "urls":
        return
    for line in rep["lines"]:
        st.caption(line)
    failed = rep["failed"]
    if failed:
        # A data frame shows each cell as plain text, so an address holding markup stays inert.
        with st.expander(f"Which {len(failed)} address{'es' * (len(failed) != 1)} failed, and why"):
            st.dataframe({k: [f[k] for f in failed] for k in ("class", "url", "reason")},
                         hide_index=True, key=state.T_DL_FAILED)


__all__ = ["SOURCES", "CLEANED_LABEL", "dataset", "current_counts", "take_in_download",
           "data_section", "download_live", "download_report"]
