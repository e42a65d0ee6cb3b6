"""Train: data, model, LR finder, training with live curves, the coach, and saved runs.

Long work runs as a job on the process-wide engine.jobs.JobRunner; this page only submits jobs and
watches them in fragments that redraw every half second, so touching a widget never stops training.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import streamlit as st

from engine import jobs as J
from engine import train_job as TJ
from engine.coach import diagnose
from engine.data import DataError
from engine.models import ARCHS, PRETRAINED_ARCHS
from engine.runs import RunError, list_runs, load_run
from engine.train import DIGITS_DEFAULTS, PHOTO_DEFAULTS
from ui import state as S
from ui import train_figs as F
from ui.figures import ReadyFigure
from ui import urlstate
from ui.nav import ensure_app_navigation

PAGE = "train"
POLL_S = 0.5                     # seconds between redraws of the LR finder (a few seconds long)
TRAIN_POLL_S = 2.5               # ... of a training run: each redraw takes CPU from training
#                                  (measured: 1 s redraws cost 27 % of digits throughput, 2.5 s ~10 %)
CLEANED_LABEL = "Data cleaned in the Explorer"
SOURCES = {"digits": "Handwritten digits (built in, offline)", "pets": "Oxford-IIIT Pet",
           "zip": "Upload a zip of class folders", "urls": "Image URLs per class",
           "folder": "A folder on the server"}
METHOD_LABELS = {"fit_one_cycle": "fit_one_cycle (one-cycle schedule)",
                 "fine_tune": "fine_tune (head first, then all layers)",
                 "unfreeze": "unfreeze + slice(lo, hi) (continue the last run)"}
PRECOMPUTE_LABEL = "Precompute body features (precompute=True)"
PRECOMPUTE_HELP = ("Runs the frozen pretrained body once over every image and keeps what it "
                   "outputs; the epochs then train only the head on those stored features. Same "
                   "model as the long way, but seconds instead of minutes on a CPU. It only works "
                   "while the body is frozen and augmentation is off: otherwise the body's output "
                   "changes from epoch to epoch.")
SIZES = (16, 28, 32, 64, 96, 128, 160, 192, 224)
BATCH_SIZES = (8, 16, 32, 64, 128, 256)


# ------------------------------------------------------------------------------------------------
# Shared objects and state


@st.cache_resource(show_spinner=False)
def runner() -> J.JobRunner:
    """One queue per server process: jobs of every session wait in it (each job keeps its owner)."""
    return J.JobRunner()


@st.cache_resource(show_spinner=False)
def digits_path() -> str:
    from engine.data import digits_folder
    return str(digits_folder())


@st.cache_data(show_spinner=False, ttl=300)
def weights_downloadable() -> bool:
    return TJ.can_download()


@st.cache_data(show_spinner=False, max_entries=32)
def counts_of(folder: str, valid_pct: float, seed: int, stamp: float) -> dict:
    return TJ.class_counts(folder, valid_pct, seed)


@st.cache_data(show_spinner=False, max_entries=32)
def preview_of(spec_key: tuple, augment: bool, stamp: float) -> np.ndarray:
    folder, size, valid_pct, seed, flip = spec_key
    spec = TJ.TrainSpec(folder=folder, size=size, valid_pct=valid_pct, seed=seed, flip=flip)
    return TJ.preview_batch(spec, augment=augment)


def _stamp(folder: str) -> float:
    """Changes when the folder's class folders change (cleaning, quarantine), to refresh caches."""
    p = Path(folder)
    try:
        return max([p.stat().st_mtime] + [c.stat().st_mtime for c in p.iterdir() if c.is_dir()])
    except OSError:
        return 0.0


def defaults(source: str) -> dict:
    d = DIGITS_DEFAULTS if source == "digits" else PHOTO_DEFAULTS
    return {S.T_ARCH: d["arch"], S.T_PRETRAINED: d["arch"] in PRETRAINED_ARCHS and source != "digits",
            S.T_SIZE: d["size"], S.T_BS: d["bs"], S.T_EPOCHS: d["epochs"], S.T_LR: d["lr"],
            S.T_METHOD: "fit_one_cycle" if source == "digits" else "fine_tune"}


def init_state() -> None:
    for p in urlstate.table(PAGE):
        S.restore(p.key, p.default)
    S.restore(S.T_FREEZE_EPOCHS, 1)
    S.restore(S.T_LR_LO, 1e-5)
    S.restore(S.T_PETS_LABELS, "species")
    if not st.session_state.get(S.T_URL_LOADED):
        st.session_state[S.T_URL_LOADED] = True
        for problem in urlstate.load(PAGE):
            st.warning(problem)
    _apply_retrain()


def _apply_retrain() -> None:
    """Take over the settings the Explorer's “Retrain with the cleaned data” button handed over."""
    spec = st.session_state.pop(S.E_RETRAIN, None)
    if not spec:
        return
    for key, name in [(S.T_ARCH, "arch"), (S.T_PRETRAINED, "pretrained"), (S.T_SIZE, "size"),
                      (S.T_BS, "bs"), (S.T_VALID_PCT, "valid_pct"), (S.T_SEED, "seed"),
                      (S.T_EPOCHS, "epochs"), (S.T_LR, "lr"), (S.T_AUGMENT, "augment"),
                      (S.T_PRECOMPUTE, "precompute")]:
        value = spec.get(name)
        if value is None or (key == S.T_SIZE and value not in SIZES) or \
                (key == S.T_BS and value not in BATCH_SIZES):
            continue  # a value the widgets cannot show keeps the page's own
        S.set_value(key, value)
    if spec.get("method") in ("fit_one_cycle", "fine_tune"):
        S.set_value(S.T_METHOD, spec["method"])
    folder = spec.get("data_folder") or spec.get("folder")
    if folder:
        st.session_state[S.T_CLEANED] = {"folder": str(folder), "flip": bool(spec.get("flip", True)),
                                         "name": f"{spec.get('data') or 'data'} (cleaned)",
                                         "writable": True, "from_run": spec.get("from_run")}
        S.set_value(S.T_SOURCE, "cleaned")


def widget_keys() -> list[str]:
    return [p.key for p in urlstate.table(PAGE)] + [S.T_FREEZE_EPOCHS, S.T_LR_LO,
                                                     S.T_PETS_LABELS, S.T_FOLDER]


def _on_source() -> None:
    """A new source brings its own model defaults (digits: small CNN at 16 px; photos: pretrained)."""
    if st.session_state[S.T_SOURCE] != "cleaned":  # a cleaned set keeps the settings it came with
        for key, value in defaults(st.session_state[S.T_SOURCE]).items():
            S.set_value(key, value)
    st.session_state.pop(S.T_DATASET, None)
    st.session_state.pop("train.verify", None)


def current_job() -> J.Job | None:
    """This session's job: the one it started, or (after a reload) the owner's running one."""
    owner = S.owner_token()
    job = runner().get(st.session_state.get(S.T_JOB), owner)
    if job is None or not job.is_active:
        job = runner().active(owner) or job
    if job is not None:
        st.session_state[S.T_JOB] = job.id
        job.touch()
    return job


def dataset() -> dict | None:
    return st.session_state.get(S.T_DATASET)


def make_spec(folder: str = "", data_name: str = "", flip: bool = False, **extra) -> TJ.TrainSpec:
    """The settings as a TrainSpec; precompute only when the settings allow it (as the page shows)."""
    last = st.session_state.get(S.T_LAST_RESULT) or {}
    spec = TJ.TrainSpec(
        folder=folder, data_name=data_name, flip=flip, arch=S.get(S.T_ARCH),
        pretrained=bool(S.get(S.T_PRETRAINED)) and S.get(S.T_ARCH) in PRETRAINED_ARCHS,
        size=int(S.get(S.T_SIZE)), bs=int(S.get(S.T_BS)), valid_pct=float(S.get(S.T_VALID_PCT)),
        seed=int(S.get(S.T_SEED)), augment=bool(S.get(S.T_AUGMENT)), method=S.get(S.T_METHOD),
        epochs=int(S.get(S.T_EPOCHS)), freeze_epochs=int(S.get(S.T_FREEZE_EPOCHS)),
        lr=float(S.get(S.T_LR)), lr_lo=float(S.get(S.T_LR_LO)),
        start_from=last.get("run_id") if S.get(S.T_METHOD) == "unfreeze" else None,
        owner=S.owner_token(), **extra)
    spec.precompute = bool(S.get(S.T_PRECOMPUTE)) and TJ.precompute_reason(spec) is None
    return spec


def job_spec(**extra) -> TJ.TrainSpec:
    """make_spec for the chosen data set (the LR finder and Train buttons need one)."""
    ds = dataset()
    return make_spec(folder=ds["folder"], data_name=ds["name"], flip=ds["flip"], **extra)


def submit(kind: str, fn, *args, resource: str = "cpu") -> None:
    """Queue fn(ctx, *args) as this session's job (a URL download passes two arguments)."""
    job = runner().submit(kind, fn, *args, owner=S.owner_token(), resource=resource,
                          meta={"kind": kind})
    st.session_state[S.T_JOB] = job.id


# ------------------------------------------------------------------------------------------------
# 1. Data


def data_section() -> None:
    st.subheader("1 · Data")
    options = list(SOURCES) + (["cleaned"] if st.session_state.get(S.T_CLEANED) else [])
    if S.get(S.T_SOURCE) not in options:
        S.set_value(S.T_SOURCE, "digits")
    st.radio("Images to learn from", options, format_func=lambda o: SOURCES.get(o, CLEANED_LABEL),
             key=S.T_SOURCE, horizontal=True, on_change=_on_source)
    source = S.get(S.T_SOURCE)
    if source == "cleaned":
        cleaned = st.session_state[S.T_CLEANED]
        st.caption(f"The data set you cleaned in the Explorer, with the settings of run "
                   f"{cleaned.get('from_run') or ''}: train again to see whether cleaning helped.")
        st.session_state[S.T_DATASET] = {k: cleaned[k] for k in ("folder", "name", "flip", "writable")}
    elif source == "digits":
        st.caption("1,797 scanned handwritten digits, 8×8 pixels, ten classes 0–9 (from "
                   "scikit-learn). Ready at once, no internet needed.")
        st.session_state[S.T_DATASET] = {"folder": digits_path(), "name": "digits", "flip": False,
                                         "writable": False}
    elif source == "pets":
        pets_source()
    elif source == "zip":
        zip_source()
    elif source == "urls":
        urls_source()
    else:
        folder_source()
    if st.session_state.get(S.T_DATA_ERROR):
        st.error(st.session_state[S.T_DATA_ERROR])
    ds = dataset()
    if ds is None:
        return
    c1, c2 = st.columns(2)
    for key, default in ((S.T_VALID_PCT, 0.2), (S.T_SEED, 42)):
        # Hand the value to the widget explicitly: when these reappear in the run that follows a
        # download's live panel, the browser otherwise draws them at their minimum (0.05, 0).
        st.session_state[key] = S.get(key, default)
    c1.slider("Validation share (valid_pct)", 0.05, 0.5, step=0.05, key=S.T_VALID_PCT,
              help="Held-out images the model never trains on; they measure the error rate.")
    c2.number_input("Seed", 0, 2**31 - 1, key=S.T_SEED,
                    help="The same seed picks the same validation images every time, so runs "
                         "are compared on the same set.")
    try:
        counts = counts_of(ds["folder"], float(S.get(S.T_VALID_PCT)), int(S.get(S.T_SEED)),
                           _stamp(ds["folder"]))
    except DataError as exc:
        st.error(str(exc))
        st.session_state.pop(S.T_DATASET, None)
        return
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(ReadyFigure(F.counts_figure(counts["classes"], counts["train"], counts["valid"])),
                        key="train.counts_fig")
        st.caption(f"{sum(counts['train']):,} training and {sum(counts['valid']):,} validation "
                   f"images in {len(counts['classes'])} classes"
                   + (" (the folder's own valid/ split)." if counts["has_valid_folder"] else
                      f" — each class holds out {float(S.get(S.T_VALID_PCT)):.0%}, chosen by "
                      "the seed."))
    with right:
        verify_panel(ds)
    st.toggle("Augment the training images (random rotation, zoom, lighting"
              + (", flips" if ds["flip"] else "") + ")", key=S.T_AUGMENT,
              help="Each epoch the model sees a new random variation of every training image, "
                   "which helps it generalise; the batch below shows them as training will. "
                   "Validation images are never augmented.")
    spec_key = (ds["folder"], int(S.get(S.T_SIZE)), float(S.get(S.T_VALID_PCT)),
                int(S.get(S.T_SEED)), bool(ds["flip"]))
    try:
        grid = preview_of(spec_key, bool(S.get(S.T_AUGMENT)), _stamp(ds["folder"]))
        st.image(grid, caption=f"show_batch: training images at {S.get(S.T_SIZE)} px, as the "
                               "model sees them" + (" (augmented — a new variation every epoch)"
                                                    if S.get(S.T_AUGMENT) else ""))
    except DataError as exc:
        st.error(str(exc))


def verify_panel(ds: dict) -> None:
    st.markdown("**Verify the images**")
    st.caption("Opens every file and lists the ones that are not images the app can read.")
    if st.button("Check every image", key="train.verify_btn"):
        from engine.data import verify_images
        with st.spinner("Checking…"):
            bad = verify_images(ds["folder"])
        st.session_state["train.verify"] = {"folder": ds["folder"],
                                            "bad": [(str(p), r) for p, r in bad]}
    report = st.session_state.get("train.verify")
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
        if st.button(f"Quarantine {len(report['bad'])} files", key="train.quarantine"):
            from engine.data import verify_images
            moved = verify_images(ds["folder"], delete=True,
                                  quarantine=TJ.session_dir(S.owner_token()) / "quarantine")
            st.session_state["train.verify"] = {"folder": ds["folder"], "bad": []}
            st.toast(f"Moved {len(moved)} files to quarantine (they can be moved back).")
            st.rerun()
    else:
        st.caption("This data set is shared, so it is read-only here: the training loader skips "
                   "these files anyway.")


def pets_source() -> None:
    from engine.data import pets_download_size
    from engine.paths import data_dir
    st.radio("Labels", ["species", "breeds"], key=S.T_PETS_LABELS, horizontal=True,
             format_func={"species": "cat or dog (2 classes)", "breeds": "37 breeds"}.get)
    labels = S.get(S.T_PETS_LABELS)
    folder = data_dir() / f"pets-{labels}"
    if folder.is_dir():
        st.session_state[S.T_DATASET] = {"folder": str(folder), "name": f"pets-{labels}",
                                         "flip": True, "writable": False}
        return
    st.session_state.pop(S.T_DATASET, None)
    st.info(pets_download_size())
    job = current_job()
    busy = job is not None and job.is_active
    if st.button("Download Oxford-IIIT Pet", key="train.pets_dl", disabled=busy):
        st.session_state.pop(S.T_DATA_ERROR, None)
        submit("download", _pets_job, labels, resource="io")
        st.rerun()


def _pets_job(ctx, labels: str) -> dict:
    from engine.data import pets_folder
    path = pets_folder(labels=labels, progress=lambda f, m: ctx.progress(f, m))
    return {"kind": "download", "folder": str(path), "name": f"pets-{labels}", "flip": True,
            "writable": False}


def zip_source() -> None:
    from engine.data import extract_zip
    up = st.file_uploader("A .zip holding one folder per class (or train/ and valid/ folders)",
                          type=["zip"], key="train.zip")
    if up is not None and st.button("Use this zip", key="train.zip_use"):
        name = "".join(c for c in Path(up.name).stem if c.isalnum() or c in "-_")[:40] or "upload"
        try:
            dest = extract_zip(up, TJ.session_dir(S.owner_token()) / f"zip-{name}")
            st.session_state[S.T_DATASET] = {"folder": str(dest), "name": name, "flip": True,
                                             "writable": True}
            st.session_state.pop(S.T_DATA_ERROR, None)
        except DataError as exc:
            st.session_state[S.T_DATA_ERROR] = str(exc)
    ds = dataset()
    if ds and "zip-" not in Path(ds["folder"]).name:
        st.session_state.pop(S.T_DATASET, None)


def urls_source() -> None:
    st.caption("As in the lesson's bears: one list of image addresses per class. The class name "
               "becomes the folder name. Downloads check every address and skip files that are "
               "not images.")
    n = st.number_input("Classes", 2, 6, 2, key="train.url_n")
    cols = st.columns(int(n))
    lists = {}
    for i, col in enumerate(cols):
        name = col.text_input("Class name", key=f"train.url_name{i}", value=["grizzly", "black", "teddy",
                                                                             "c4", "c5", "c6"][i])
        text = col.text_area("URLs, one per line", key=f"train.url_text{i}", height=120)
        lists[name.strip()] = [u.strip() for u in text.splitlines() if u.strip()]
    files = st.file_uploader("…or upload text files named after their class (urls_teddy.txt)",
                             type=["txt"], accept_multiple_files=True, key="train.url_files")
    for f in files or []:
        from engine.download import class_name_from_url_file
        cls = class_name_from_url_file(f.name)
        lists[cls] = [u.strip() for u in f.getvalue().decode("utf-8", "replace").splitlines() if u.strip()]
    job = current_job()
    busy = job is not None and job.is_active
    if st.button("Download the images", key="train.url_dl", disabled=busy):
        lists = {k: v for k, v in lists.items() if k and v}
        if len(lists) < 2:
            st.session_state[S.T_DATA_ERROR] = "Give at least two classes, each with a name and URLs."
        else:
            st.session_state.pop(S.T_DATA_ERROR, None)
            st.session_state.pop(S.T_DL_REPORT, None)
            dest = TJ.session_dir(S.owner_token()) / "urls"
            submit("download", _urls_job, lists, dest, resource="io")
            st.rerun()
    ds = dataset()
    if ds and not Path(ds["folder"]).name == "urls":
        st.session_state.pop(S.T_DATASET, None)


def _urls_job(ctx, lists: dict, dest: Path) -> dict:
    import re
    from engine.download import download_images
    reports, failed = [], []
    for k, (cls, urls) in enumerate(lists.items()):
        safe = re.sub(r"[^\w\- ]", "", cls).strip()[:40] or f"class{k}"
        ctx.progress(k / len(lists), f"Downloading {safe}")
        rep = download_images(urls, Path(dest) / safe)
        reports.append(f"{safe}: " + rep.summary())
        failed += [{"class": safe, "url": url, "reason": why} for url, why in rep.failed]
        ctx.check_cancelled()
    return {"kind": "download", "folder": str(dest), "name": "my images", "flip": True,
            "writable": True, "report": reports, "failed": failed}


def download_report() -> None:
    """The last URL download's summary per class and, on request, each failed address with its
    reason. It stays, while the source is a URL list, until the next download (also when every
    address failed and there is no data set to train on)."""
    rep = st.session_state.get(S.T_DL_REPORT)
    if not rep or S.get(S.T_SOURCE) != "urls":
        return
    for line in rep["lines"]:
        st.caption(line)
    failed = rep["failed"]
    if failed:
        # A data frame shows each cell as plain text, so an address holding markup stays inert.
        with st.expander(f"Which {len(failed)} address{'es' * (len(failed) != 1)} failed, and why"):
            st.dataframe({k: [f[k] for f in failed] for k in ("class", "url", "reason")},
                         hide_index=True, key="train.dl_failed")


def folder_source() -> None:
    from engine.paths import data_dir
    root = data_dir() / "folders"
    root.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        st.info(f"No folders yet: put a data set (one sub-folder per class) under {root} on the "
                "server, then reload.")
        st.session_state.pop(S.T_DATASET, None)
        return
    name = st.selectbox("Folder", names, key=S.T_FOLDER)
    st.session_state[S.T_DATASET] = {"folder": str(root / name), "name": name, "flip": True,
                                     "writable": False}


def download_panel(job: J.Job | None) -> None:
    """Progress of a download job; when it ends, its folder becomes the data set."""
    # Drawn until the job is taken in, not only while it is active: refused addresses end a job
    # within milliseconds, possibly after main() looked, and the live panel is what takes it in.
    if job is None or job.meta.get("kind") != "download" or \
            st.session_state.get("train.consumed") == job.id:
        return
    st.fragment(download_live, run_every=POLL_S)()


def _watched_job() -> J.Job | None:
    """For a live fragment: the session's job, its queue position drawn; a finished job is taken
    in and the whole page redrawn once (the fragment then stops polling)."""
    job = current_job()
    if job is None:
        return None
    if not job.is_active:
        consume(job)
        st.rerun(scope="app")
    queued(job)
    return job


def download_live() -> None:
    job = _watched_job()
    if job is None:
        return
    st.progress(job.progress, text=job.message or "Starting the download…")
    st.button("Cancel download", key="train.dl_cancel", on_click=runner().cancel,
              args=(job.id, S.owner_token()))


# ------------------------------------------------------------------------------------------------
# 2. Model


def model_section() -> None:
    from engine.training import default_device
    st.subheader("2 · Model")
    c1, c2, c3, c4 = st.columns([3, 2, 1, 1])
    c1.selectbox("Architecture", list(ARCHS), key=S.T_ARCH, format_func=lambda a: f"{a} — {ARCHS[a]}")
    arch = S.get(S.T_ARCH)
    can_pre = arch in PRETRAINED_ARCHS
    c2.checkbox("Start from ImageNet weights (pretrained)", key=S.T_PRETRAINED, disabled=not can_pre,
                help="Transfer learning: reuse a network trained on 1.3 million photos and train a "
                     "new last layer for our classes.")
    c3.selectbox("Image size", SIZES, key=S.T_SIZE)
    c4.selectbox("Batch size", BATCH_SIZES, key=S.T_BS)
    if S.get(S.T_PRETRAINED) and can_pre and not TJ.pretrained_cached(arch):
        if not weights_downloadable():
            st.warning(f"The ImageNet weights for {arch} are not on this machine and it cannot "
                       "download them (no internet). Choose efficientnet_lite0, whose weights "
                       "ship with the app, or untick “pretrained” to train from scratch.")
        else:
            st.caption(f"The ImageNet weights for {arch} will be downloaded once when training starts.")
    elif not can_pre:
        st.caption(f"{arch} has no pretrained weights: it learns from random numbers.")
    dev = default_device()
    st.caption(f"Device in use: **{dev.type.upper()}**"
               + ("" if dev.type != "cpu" else " — training runs on the processor; small images "
                  "and small models keep it quick."))


# ------------------------------------------------------------------------------------------------
# 3. LR finder


def _on_pick_lr() -> None:
    """A click on the LR-finder curve or a marker sets the learning rate used next."""
    sel = st.session_state.get(S.T_LR_PICK) or {}
    points = (sel.get("selection") or {}).get("points") or []
    if points and points[0].get("x"):
        S.set_value(S.T_LR, float(f"{float(points[0]['x']):.2e}"))


def _use_lr(lr: float) -> None:
    S.set_value(S.T_LR, float(f"{lr:.2e}"))


def lr_section(job: J.Job | None) -> None:
    st.subheader("3 · Learning-rate finder")
    st.caption("Trains for about 100 mini-batches while the learning rate grows exponentially, "
               "then puts the model back as it was. Pick a rate where the loss still falls "
               "steeply — well before the bottom, where it is about to blow up.")
    busy = job is not None and job.is_active
    if st.button("Find a learning rate", key="train.lr_find_btn", disabled=busy or dataset() is None,
                 type="primary"):
        try:
            submit("lr_find", TJ.lr_find_job, job_spec())
            st.rerun()
        except ValueError as exc:
            st.error(str(exc))
    if job is not None and job.meta.get("kind") == "lr_find" and job.is_active:
        st.fragment(lr_live, run_every=POLL_S)()
        return
    res = st.session_state.get(S.T_LR_FIND)
    if not res:
        return
    chosen = float(S.get(S.T_LR))
    st.plotly_chart(ReadyFigure(F.lr_find_figure(res["lrs"], res["losses"], res["suggestions"],
                                                chosen=chosen)),
                    key=S.T_LR_PICK, on_select=_on_pick_lr, selection_mode="points")
    sug = {k: v for k, v in res["suggestions"].items() if v}
    cols = st.columns(len(sug) or 1)
    for col, (name, lr) in zip(cols, sug.items()):
        col.button(f"Use {name}: {lr:.1e}", key=f"train.use_{name}", on_click=_use_lr, args=(lr,))
    st.caption("Click a point of the curve or a marker, or a button, to use that learning rate. "
               "valley: a point in the longest downhill stretch (a good default); steep: where the "
               "loss falls fastest; minimum: a tenth of the lowest point; slide: where the curve "
               "flattens before it rises.")


def lr_live() -> None:
    job = _watched_job()
    if job is None:
        return
    events = job.events()
    pts = [e for e in events if e["kind"] == "lr_find"]
    stage = next((e["message"] for e in reversed(events) if e["kind"] == "stage"), "")
    st.progress(job.progress, text=f"{stage}: step {len(pts)}" if pts else
                TJ.live_message(events, job.message, stage or "Starting…"))
    for note in job_notes(events):
        st.info(note)
    st.plotly_chart(ReadyFigure(F.lr_find_figure([p["lr"] for p in pts], [p["smooth_loss"] for p in pts],
                                                 running=True)), key="train.lr_live_fig")
    st.button("Cancel", key="train.lr_cancel", on_click=runner().cancel,
              args=(job.id, S.owner_token()))


def queued(job: J.Job) -> None:
    if job.status == J.QUEUED:
        st.info(f"Waiting for the {'processor' if job.resource == 'cpu' else job.resource}: "
                f"position {job.position} in the queue. Another training is running; this one "
                "starts as soon as it ends.")


# ------------------------------------------------------------------------------------------------
# 4. Train


def train_section(job: J.Job | None) -> None:
    from engine.training import one_cycle_schedule
    st.subheader("4 · Train")
    c1, c2, c3 = st.columns([3, 1, 2])
    c1.radio("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key=S.T_METHOD)
    method = S.get(S.T_METHOD)
    c2.number_input("Epochs", 1, 100, key=S.T_EPOCHS)
    if method == "fine_tune":
        c2.number_input("Frozen epochs", 0, 10, key=S.T_FREEZE_EPOCHS)
    c3.number_input("Learning rate" + (" (hi, the head)" if method == "unfreeze" else ""),
                    1e-7, 10.0, format="%.2e", step=1e-4, key=S.T_LR)
    if method == "unfreeze":
        c3.number_input("lo (earliest layers)", 1e-8, 1.0, format="%.2e", step=1e-6, key=S.T_LR_LO)
        st.caption("Unfreezing trains every layer of the last run's model. Early layers already "
                   "know edges and textures, so they get smaller rates: slice(lo, hi) spreads "
                   "them from lo (first layers) to hi (the head).")
    elif method == "fine_tune":
        st.caption("fine_tune: the frozen epochs train only the new head at the rate above; then "
                   "every layer trains with slice(rate/200, rate/2).")
    elif S.get(S.T_PRETRAINED):
        st.caption("With pretrained weights, fit_one_cycle trains only the new head (the body "
                   "stays frozen), as in the lesson.")
    precompute_setting()
    ds = dataset()
    if ds is not None:
        try:
            counts = counts_of(ds["folder"], float(S.get(S.T_VALID_PCT)), int(S.get(S.T_SEED)),
                               _stamp(ds["folder"]))
            nb = TJ.batches_per_epoch(sum(counts["train"]), int(S.get(S.T_BS)))
            sched = schedule_for(method, nb)
            done = job_steps(job) if job is not None and job.meta.get("kind") == "train" else 0
            with st.expander("Learning-rate schedule", expanded=False):
                st.plotly_chart(ReadyFigure(F.schedule_figure(sched[0], sched[1], nb, sched[2], done)),
                                key="train.sched_fig")
                st.caption("One-cycle: the rate warms up from rate/25 to the peak, then anneals "
                           "to almost zero; momentum does the opposite.")
        except (DataError, ValueError):
            pass
    busy = job is not None and job.is_active
    if st.button("Train", key="train.start", type="primary", disabled=busy or ds is None):
        try:
            spec = job_spec(lr_find_result=st.session_state.get(S.T_LR_FIND))
            if spec.method == "unfreeze" and not spec.start_from:
                raise ValueError("Unfreezing continues a trained model: train first with "
                                 "fit_one_cycle or fine_tune.")
            submit("train", TJ.train_job, spec)
            st.rerun()
        except ValueError as exc:
            st.error(str(exc))
    if job is not None and job.meta.get("kind") == "train" and job.is_active:
        st.fragment(train_live, run_every=TRAIN_POLL_S)()
    elif (last := st.session_state.get(S.T_LAST_RESULT)) and last.get("kind") == "train":
        for note in last.get("notes") or []:
            st.info(note)
        pre = last.get("precompute") or {}
        if pre.get("used"):
            st.caption(f"The head trained on precomputed body features (computed once, in "
                       f"{pre['seconds']:.1f} s).")
        draw_training(last["epochs"], last["batches"], last.get("total_steps"),
                      last.get("total_epochs"), live=False)


def precompute_setting() -> None:
    """The precompute checkbox; greyed, with the reason below it, when the settings rule it out."""
    reason = TJ.precompute_reason(make_spec())
    if reason is None:
        st.checkbox(PRECOMPUTE_LABEL, key=S.T_PRECOMPUTE, help=PRECOMPUTE_HELP)
    else:
        # Drawn unticked under its own key; the learner's choice waits under keep: (ui.state) and
        # comes back when precompute applies again. The widget's own value would go stale.
        st.session_state.pop(S.T_PRECOMPUTE, None)
        st.checkbox(PRECOMPUTE_LABEL, value=False, disabled=True, key="train.precompute_off",
                    help=PRECOMPUTE_HELP)
        st.caption(reason)


def job_notes(events: list) -> list[str]:
    return [e["message"] for e in events if e["kind"] == "note"]


def schedule_for(method: str, nb: int):
    from engine.training import one_cycle_schedule
    lr, lo = float(S.get(S.T_LR)), float(S.get(S.T_LR_LO))
    epochs = int(S.get(S.T_EPOCHS))
    n_groups = 3
    if method == "fine_tune":
        fe = int(S.get(S.T_FREEZE_EPOCHS))
        parts = []
        if fe:
            parts.append(one_cycle_schedule(fe * nb, slice(lr), pct_start=0.99, n_groups=n_groups))
        parts.append(one_cycle_schedule(epochs * nb, slice(lr / 200, lr / 2), pct_start=0.3,
                                        div=5.0, n_groups=n_groups))
        lrs = np.concatenate([p.lrs for p in parts])
        moms = np.concatenate([p.moms for p in parts])
    elif method == "unfreeze":
        s = one_cycle_schedule(epochs * nb, slice(lo, lr), n_groups=n_groups)
        lrs, moms = s.lrs, s.moms
    else:
        s = one_cycle_schedule(epochs * nb, lr, n_groups=1)
        return s.lrs, s.moms, ["all layers"]
    return lrs, moms, ["early layers", "late layers", "head"]


def job_steps(job: J.Job) -> int:
    return sum(1 for e in job.events() if e["kind"] == "batch")


def train_live() -> None:
    job = _watched_job()
    if job is None:
        return
    events = job.events()
    batches = [e for e in events if e["kind"] == "batch"]
    epochs = [e for e in events if e["kind"] == "epoch"]
    starts = [e for e in events if e["kind"] == "fit_start"]
    stage = next((e["message"] for e in reversed(events) if e["kind"] == "stage"), "Starting")
    spec_total = job.meta.get("total_steps")
    total = spec_total or sum(s["total_steps"] for s in starts) or None
    if job.status == J.RUNNING:
        first = next((e["time"] for e in events if e["kind"] == "fit_start"), None)
        frac = job.progress
        text = TJ.live_message(events, job.message, stage)
        if first is not None and batches:
            elapsed = time.time() - first
            left = TJ.eta(frac, elapsed)
            ep = batches[-1]["epoch"] + 1
            n_ep = sum(s["epochs"] for s in starts)
            text = (f"{stage} · epoch {ep} of {n_ep} ({batches[-1]['stage']}) · {frac:.0%} · "
                    f"{F.fmt_time(elapsed)} elapsed" + (f" · about {F.fmt_time(left)} left"
                                                       if left is not None else ""))
        st.progress(frac, text=text)
    for note in job_notes(events):
        st.info(note)
    st.button("Cancel", key="train.cancel", on_click=runner().cancel,
              args=(job.id, S.owner_token()), help="Stops before the next batch; the model goes "
              "back to the end of its last finished epoch, which is saved as a run.")
    draw_training(epochs, batches, total, sum(s["epochs"] for s in starts) or None, live=True)


def draw_training(epochs: list, batches: list, total_steps, total_epochs, live: bool) -> None:
    a, b = st.columns(2)
    a.plotly_chart(ReadyFigure(F.batch_loss_figure(batches, total_steps)),
                   key="train.loss_fig_live" if live else "train.loss_fig")
    b.plotly_chart(ReadyFigure(F.epoch_figure(epochs, total_epochs)),
                   key="train.epoch_fig_live" if live else "train.epoch_fig")
    if epochs:
        st.dataframe(F.epoch_table(epochs), hide_index=True,
                     key="train.table_live" if live else "train.table")


def consume(job: J.Job) -> None:
    """Store a finished job's outcome in the session once (then the page draws it statically)."""
    if st.session_state.get("train.consumed") == job.id:
        return
    st.session_state["train.consumed"] = job.id
    kind = job.meta.get("kind")
    if job.status == J.FAILED:
        target = S.T_DATA_ERROR if kind == "download" else "train.job_error"
        st.session_state[target] = job.error
        return
    st.session_state.pop("train.job_error", None)
    res = job.result or {}
    if job.status == J.CANCELLED and job.cancel_reason == J.CANCEL_UNWATCHED:
        st.session_state["train.job_error"] = job.cancel_reason
    if kind == "download" and job.status == J.DONE:
        st.session_state[S.T_DATASET] = {k: res[k] for k in ("folder", "name", "flip", "writable")}
        if res.get("report"):
            st.session_state[S.T_DL_REPORT] = {"lines": res["report"],
                                               "failed": res.get("failed", [])}
    elif kind == "lr_find" and res.get("lrs"):
        st.session_state[S.T_LR_FIND] = {k: res[k] for k in ("lrs", "losses", "suggestions")}
        if res.get("suggestions", {}).get("valley"):
            _use_lr(res["suggestions"]["valley"])
    elif kind == "train" and res:
        starts = [e for e in job.events() if e["kind"] == "fit_start"]
        st.session_state[S.T_LAST_RESULT] = {
            "kind": "train", "job_id": job.id, "epochs": res["epochs"], "batches": res["batches"],
            "cancelled": res["cancelled"] or job.status == J.CANCELLED, "run_id": res.get("run_id"),
            "total_steps": sum(s["total_steps"] for s in starts) or None,
            "total_epochs": sum(s["epochs"] for s in starts) or None, "seconds": res["seconds"],
            "precompute": res.get("precompute"), "notes": job_notes(job.events())}


# ------------------------------------------------------------------------------------------------
# 5. Coach and 6. Runs


def coach_section() -> None:
    last = st.session_state.get(S.T_LAST_RESULT)
    if not last or last.get("kind") != "train":
        return
    st.subheader("5 · Coach")
    show = {"error": st.error, "warning": st.warning, "info": st.info, "success": st.success}
    for note in diagnose(last["epochs"], last["batches"], cancelled=last["cancelled"]):
        show[note.level](f"**{note.title}.** {note.text}")


def runs_section() -> None:
    st.subheader("6 · Runs")
    runs = list_runs(S.owner_token())
    if not runs:
        st.caption("Each finished or cancelled training run is saved here with its model, "
                   "validation predictions and curves.")
        return
    table = {"when": [time.strftime("%H:%M:%S", time.localtime(r.created)) for r in runs],
             "data": [r.data for r in runs], "arch": [r.arch for r in runs],
             "epochs": [r.epochs for r in runs], "status": [r.status for r in runs],
             "error_rate": [f"{r.metrics.get('error_rate', math.nan):.2%}" for r in runs],
             "valid_loss": [f"{r.metrics.get('valid_loss', math.nan):.4f}" for r in runs],
             "id": [r.id for r in runs]}
    st.dataframe(table, hide_index=True, key="train.runs_table")
    pick = st.selectbox("Run", [r.id for r in runs], key="train.run_pick",
                        format_func=lambda i: next(f"{time.strftime('%H:%M:%S', time.localtime(r.created))}"
                                                   f" · {r.data} · {r.arch} · error "
                                                   f"{r.metrics.get('error_rate', math.nan):.2%}"
                                                   f" · {r.id[:6]}" for r in runs if r.id == i))
    c1, c2 = st.columns([1, 3])
    if c1.button("Reload this run", key="train.run_reload"):
        try:
            run = load_run(pick)
            hist = run.history
            st.session_state[S.T_LAST_RESULT] = {
                "kind": "train", "job_id": None, "epochs": hist.get("epochs", []),
                "batches": hist.get("batches", []), "cancelled": run.info.status == "cancelled",
                "run_id": run.info.id, "total_steps": None, "total_epochs": None,
                "precompute": hist.get("precompute")}
            if hist.get("lr_find"):
                st.session_state[S.T_LR_FIND] = hist["lr_find"]
            st.rerun()
        except RunError as exc:
            st.error(str(exc))
    base = (st.context.url or "").split("?")[0].rstrip("/")
    base = base.rsplit("/", 1)[0] if base.endswith("/train") else base
    c2.markdown("Share link — opens this run in the Explorer, read-only:")
    c2.code(f"{base}/explore?run={pick}", language=None)


# ------------------------------------------------------------------------------------------------


def main() -> None:
    st.title("Train")
    st.write("The training loop from the SGD page, at scale: a convolutional network, mini-batches "
             "of images, the learning-rate finder and one-cycle training. Training runs in the "
             "background, so you can move sliders or switch pages while it works.")
    init_state()
    job = current_job()
    if job is not None and not job.is_active:
        consume(job)   # it ended while nobody watched (another page, a reload)
    data_section()
    download_panel(job)
    download_report()
    model_section()
    if st.session_state.get("train.job_error"):
        st.error(st.session_state["train.job_error"])
    lr_section(job)
    train_section(job)
    coach_section()
    runs_section()
    S.remember(widget_keys())
    urlstate.sync(PAGE)


ensure_app_navigation()
main()
