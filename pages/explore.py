"""Explorer: what a trained model gets wrong (confusion matrix, top losses, Grad-CAM), cleaning the
data behind it, predicting a new photo on the CPU, and downloading the model.

Thin page: engine.runs opens saved runs, engine.interpret / engine.cleaner / engine.export compute.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import streamlit as st

from engine import cleaner as CL
from engine import interpret as I
from engine.data import IMAGE_SUFFIXES, DataError
from engine.images import ImageError, encode_jpeg, load_image, resize_to_fit
from engine.models import CheckpointError
from engine.paths import data_dir
from engine.runs import RunError, list_runs, load_run, read_info
from ui import state as S
from ui import urlstate
from ui.figures import plotly_text, plotly_texts
from ui.nav import ensure_app_navigation

PAGE = "explore"
THUMB = 168                 # side of a thumbnail on the page, pixels
CAM_SIDE = 224              # side of a Grad-CAM picture
TRAIN_CAP = 300             # most training images of one class scored for the cleaner
GRID = 4                    # tiles per row
E_CAMS = "explore.cams"     # {(run, path, class): Grad-CAM map} computed this session
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
ENGINE_ERRORS = (RunError, CheckpointError, ImageError, CL.CleanError, I.InterpretError, DataError,
                 OSError)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:~$=&])")


def md(text: object) -> str:
    """Text (file or class names) safe inside st.markdown: every markdown character escaped, so a
    name such as <b>x</b>, **x** or &amp; shows exactly as written."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


# ------------------------------------------------------------------------------------------------
# State and run choice

def init_state() -> None:
    S.restore(S.E_CM_MODE, "counts")
    S.restore(S.E_MIN_VAL, 1)
    S.restore(S.E_K, 8)
    S.restore(S.E_ORDER, "largest")
    S.restore(S.E_CAM_ALPHA, 0.5)
    S.restore(S.E_CMAP, "cividis")
    S.restore(S.E_CLEAN_SPLIT, "valid")
    S.restore(S.E_CLEAN_N, 12)
    S.restore(S.E_PRED_SOURCE, "valid")
    for key, default in ((S.E_DECISIONS, {}), (S.E_JOURNAL, {}), (S.E_TRAIN_LOSSES, {}), (E_CAMS, {})):
        st.session_state.setdefault(key, default)
    if not st.session_state.get(S.E_URL_LOADED):
        st.session_state[S.E_URL_LOADED] = True
        run_id = st.query_params.get("run")
        if run_id:
            try:
                read_info(run_id)
                st.session_state[S.E_SHARED] = run_id
                S.set_value(S.E_RUN, run_id)
            except RunError as exc:
                st.error(f"{exc} Showing your own runs instead.")


WIDGETS = [S.E_CM_MODE, S.E_MIN_VAL, S.E_K, S.E_ORDER, S.E_CAM_ALPHA, S.E_CMAP, S.E_CLEAN_SPLIT,
           S.E_CLEAN_CLASS, S.E_CLEAN_N, S.E_PRED_SOURCE, S.E_PRED_ITEM, S.E_RUN]


def _describe(info, owner: str) -> str:
    # Seconds and the start of the id keep two runs with the same settings apart in the list.
    when = time.strftime("%d %b %H:%M:%S", time.localtime(info.created))
    err = info.metrics.get("error_rate", float("nan"))
    text = (f"{info.data} · {info.arch} · {info.epochs} epoch{'s' * (info.epochs != 1)} · "
            f"error rate {err:.1%} · {when} · {info.id[:6]}")
    return text + ("" if info.owner == owner else " · shared with you (read-only)")


def pick_run(owner: str):
    """Draw the run selector; return the chosen Run, or None when there is nothing to show."""
    infos = {i.id: i for i in list_runs(owner)}
    shared = st.session_state.get(S.E_SHARED)
    if shared and shared not in infos:
        try:
            infos[shared] = read_info(shared)
        except RunError as exc:
            st.error(str(exc))
    if not infos:
        return None
    ids = list(infos)
    if S.get(S.E_RUN) not in ids:
        S.set_value(S.E_RUN, ids[0])   # the session's latest run
    run_id = st.selectbox("Run", ids, key=S.E_RUN, format_func=lambda i: _describe(infos[i], owner),
                          help="Your own runs, newest first, and a run opened from a shared link.")
    try:
        return load_run(run_id)
    except RunError as exc:
        st.error(str(exc))
        return None


def no_run(owner: str) -> None:
    st.info("There is no trained model to explore yet. Train one on the Train page — the digits "
            "take about a minute on a CPU — and it appears here, or make a tiny demo run now.")
    try:
        st.page_link("pages/train.py", label="Go to the Train page", icon=":material/model_training:")
    except Exception:  # the Train page is not part of this app yet (or not in the navigation)
        st.caption("(The Train page is not available in this copy of the app.)")
    if st.button("Make a quick demo run (300 digits, 3 epochs)", key="explore.demo"):
        with st.spinner("Training a small CNN on 300 digits for three epochs…"):
            try:
                info = make_demo_run(owner)
            except ENGINE_ERRORS as exc:
                st.error(f"The demo run could not be made: {exc}")
                return
        S.set_value(S.E_RUN, info.id)
        st.rerun()


def make_demo_run(owner: str, per_class: int = 30, epochs: int = 3):
    """A deliberately small, quick run owned by this session, on its own copy of 300 digits (so
    cleaning it never touches the shared digits folder)."""
    import torch

    from engine.data import DataConfig, build_dataloaders, digits_folder
    from engine.models import create_model
    from engine.paths import data_dir
    from engine.runs import save_run
    from engine.training import Learner

    source = digits_folder()
    dest = data_dir() / "explore-demo" / f"digits-{hashlib.sha256(owner.encode()).hexdigest()[:10]}-" \
                                         f"{int(time.time())}"
    for cls in sorted(p for p in source.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy2(f, dest / cls.name / f.name)
    torch.manual_seed(0)
    dls = build_dataloaders(dest, DataConfig(size=16, bs=32, flip=False, seed=42))
    learn = Learner(create_model("simple_cnn", len(dls.classes), pretrained=False), dls,
                    device="cpu", seed=0)
    learn.fit_one_cycle(epochs, 1e-2)
    settings = {"source": "folder", "folder": str(dest), "arch": "simple_cnn", "pretrained": False,
                "size": 16, "bs": 32, "valid_pct": 0.2, "seed": 42, "method": "fit_one_cycle",
                "epochs": epochs, "lr": 1e-2}
    return save_run(learn, owner=owner, data_name="digits demo", settings=settings,
                    history={"epochs": learn.history}, status="done")


def checkpoint(run):
    """The run's model, loaded once per session (a model is never shared between sessions)."""
    held = st.session_state.get(S.E_MODEL)
    if held is None or held[0] != run.info.id:
        held = (run.info.id, run.load_model())
        st.session_state[S.E_MODEL] = held
    return held[1]


# ------------------------------------------------------------------------------------------------
# Pictures

@st.cache_data(show_spinner=False, max_entries=2000)
def _thumb(path: str, mtime: float, side: int) -> bytes:
    return encode_jpeg(resize_to_fit(load_image(path), side))


def thumb(path: str, side: int = THUMB) -> bytes | None:
    """A small JPEG of the file, or None when it has moved (cleaned) or cannot be read."""
    try:
        return _thumb(path, os.path.getmtime(path), side)
    except (OSError, ImageError):
        return None


def cam_picture(run, path: str, class_idx: int) -> np.ndarray:
    """The image as the model saw it (centre square), with the Grad-CAM map of class_idx on top."""
    from engine.data import resize_crop
    from engine.models import preprocess_image

    ckpt = checkpoint(run)
    meta = ckpt.meta
    image = load_image(path)
    key = (run.info.id, path, class_idx)
    cams = st.session_state[E_CAMS]
    if key not in cams:
        x = preprocess_image(image, int(meta["size"]), meta["mean"], meta["std"])
        cams[key] = I.grad_cam(ckpt.model, x, class_idx)
    return I.overlay(resize_crop(image, CAM_SIDE), cams[key], alpha=float(S.get(S.E_CAM_ALPHA)),
                     cmap=S.get(S.E_CMAP))


def tile(run, i: int, *, cam_toggle: bool = False) -> None:
    """One validation image with prediction / actual / loss / probability."""
    path, _ = run.items[i]
    pred = int(run.probs[i].argmax())
    actual = int(run.targets[i])
    show_cam = cam_toggle and st.toggle("Grad-CAM", key=S.E_CAM_TILE.format(i),
                                        help="Colour where the evidence for the predicted class lies.")
    picture = None
    if show_cam:
        try:
            picture = cam_picture(run, path, pred)
        except ENGINE_ERRORS as exc:
            st.error(f"Grad-CAM could not be drawn: {exc}")
    if picture is None:
        picture = thumb(path)
    if picture is None:
        st.caption("(file moved or unreadable — perhaps cleaned)")
    else:
        st.image(picture, width=THUMB)
    mark = "✓" if pred == actual else "✗"
    st.caption(f"{mark} predicted **{md(run.classes[pred])}** · actual **{md(run.classes[actual])}**  \n"
               f"loss {max(float(run.losses[i]), 0.0):.3f} · probability {run.probs[i, pred]:.2f}")


def grid(run, indices, *, cam_toggle: bool = False) -> None:
    for start in range(0, len(indices), GRID):
        cols = st.columns(GRID)
        for col, i in zip(cols, indices[start:start + GRID]):
            with col:
                tile(run, int(i), cam_toggle=cam_toggle)


# ------------------------------------------------------------------------------------------------
# Mistakes: confusion matrix, most confused, per-class scores

def cm_figure(cm: np.ndarray, classes: list[str], rows: bool) -> dict:
    """Actual (rows) × predicted (columns); an invisible marker on every cell takes the click,
    because Plotly heatmaps cannot be selected."""
    n = len(classes)
    z = I.row_normalise(cm) if rows else cm.astype(float)
    text = [[f"{v:.0%}" if rows else f"{int(v)}" for v in r] for r in z]
    names = plotly_texts(classes)
    heat = {"type": "heatmap", "z": z.tolist(), "x": list(range(n)), "y": list(range(n)),
            "text": text, "texttemplate": "%{text}" if n <= 20 else "", "colorscale": "Cividis",
            "reversescale": False, "showscale": True, "hoverinfo": "skip", "xgap": 1, "ygap": 1,
            "colorbar": {"title": {"text": "share of row" if rows else "images"}, "thickness": 12}}
    gx, gy = np.meshgrid(np.arange(n), np.arange(n))
    faint = {"marker": {"opacity": 0.01}}
    picker = {"type": "scatter", "mode": "markers", "x": gx.ravel().tolist(), "y": gy.ravel().tolist(),
              "customdata": [[names[a], names[p], int(cm[a, p])] for a, p in
                             zip(gy.ravel(), gx.ravel())],
              "hovertemplate": "actual %{customdata[0]}, predicted %{customdata[1]}: "
                               "%{customdata[2]} images<extra></extra>",
              "marker": {"symbol": "square", "size": max(8, min(40, 420 // max(n, 1))),
                         "opacity": 0.01, "color": "#000"},
              "selected": faint, "unselected": faint, "showlegend": False}
    side = min(760, max(380, 34 * n + 160))
    ticks = {"tickmode": "array", "tickvals": list(range(n)), "ticktext": names}
    layout = {"height": side, "dragmode": False, "clickmode": "event+select",
              "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
              "xaxis": {"title": {"text": "Predicted"}, "side": "bottom", **ticks},
              "yaxis": {"title": {"text": "Actual"}, "autorange": "reversed", **ticks}}
    return {"data": [heat, picker], "layout": layout}


def _on_cm_click() -> None:
    points = (st.session_state.get(S.E_CM) or {}).get("selection", {}).get("points", [])
    if points:
        st.session_state[S.E_CELL] = (int(points[0]["y"]), int(points[0]["x"]))


def mistakes(run) -> None:
    n = len(run.classes)
    cm = I.confusion_matrix(run.targets, run.preds, n)
    acc = float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    c1, c2, c3 = st.columns(3)
    c1.metric("Validation images", f"{int(cm.sum())}")
    c2.metric("Accuracy", f"{acc:.1%}")
    c3.metric("Error rate = 1 − accuracy", f"{1 - acc:.1%}")
    st.caption("For every validation image the model gives one probability per class; its "
               "prediction is the class with the largest (argmax). These images were held out from "
               "training, so this is how the model does on pictures it has not learned from.")
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Confusion matrix")
        st.radio("Show", ["counts", "rows"], key=S.E_CM_MODE, horizontal=True,
                 format_func={"counts": "image counts", "rows": "share of each actual class"}.get)
        st.plotly_chart(cm_figure(cm, run.classes, S.get(S.E_CM_MODE) == "rows"), key=S.E_CM,
                        on_select=_on_cm_click, selection_mode="points", width="stretch",
                        config={"displayModeBar": False})
        st.caption("Row = the real class, column = what the model said. The diagonal is right; "
                   "everything off it is a mistake. Click a cell to see its images.")
    with right:
        st.subheader("Most confused")
        min_val = st.number_input("Show pairs with at least this many images", 1, 10_000,
                                  key=S.E_MIN_VAL)
        pairs = I.most_confused(cm, run.classes, int(min_val))
        if pairs:
            st.dataframe({"actual": [a for a, _, _ in pairs], "predicted": [p for _, p, _ in pairs],
                          "images": [c for _, _, c in pairs]}, hide_index=True, height=260)
        else:
            st.write("No pair of classes is mixed up that often.")
        st.subheader("Per class")
        scores = I.class_scores(cm, run.classes).rows()
        st.dataframe(scores, hide_index=True, height=260, column_config={
            k: st.column_config.NumberColumn(k, format="percent") for k in
            ("accuracy", "precision", "recall")})
        st.caption("**Precision**: of the images called this class, the share that really are. "
                   "**Recall**: of the images that really are this class, the share the model "
                   "found. **Accuracy** here is one class against the rest: the share of all "
                   "images correctly put in or out of this class.")
    cell = st.session_state.get(S.E_CELL)
    if cell is not None and max(cell) < n:
        a, p = cell
        idx = np.flatnonzero((run.targets == a) & (run.preds == p))
        idx = idx[np.argsort(-run.losses[idx], kind="stable")]
        head = st.columns([4, 1])
        head[0].markdown(f"#### Actual {md(run.classes[a])}, predicted {md(run.classes[p])}: "
                         f"{len(idx)} image{'s' * (len(idx) != 1)}")
        if head[1].button("Close", key="explore.cell_close"):
            st.session_state[S.E_CELL] = None
            st.rerun()
        if len(idx) > 24:
            st.caption("The 24 with the largest loss:")
        with st.container(key="explore-cell-images"):
            grid(run, idx[:24])


# ------------------------------------------------------------------------------------------------
# Top losses

def top_losses_section(run) -> None:
    st.write("The images with the largest loss are those the model was most confidently wrong "
             "about, or least sure of. They are often mislabelled pictures rather than model "
             "mistakes — that is what the cleaner is for.")
    c = st.columns(4)
    n = len(run.losses)
    if S.get(S.E_K, 8) > max(n, 1):
        S.set_value(S.E_K, max(n, 1))
    k = c[0].slider("Images", 1, max(1, min(48, n)), key=S.E_K) if n > 1 else n
    c[1].radio("Order", ["largest", "smallest"], key=S.E_ORDER, horizontal=True,
               format_func={"largest": "largest loss first", "smallest": "smallest first"}.get)
    c[2].slider("Grad-CAM opacity", 0.0, 1.0, step=0.05, key=S.E_CAM_ALPHA)
    c[3].radio("Colour map", list(I.COLORMAPS), key=S.E_CMAP, horizontal=True,
               help="Both maps stay readable with colour-vision deficiencies and in greyscale.")
    st.caption("Grad-CAM: the gradient of the predicted class's score tells how much each feature "
               "map of the last convolutional layer matters; their weighted sum shows where in the "
               "picture the evidence was found (bright = strong).")
    _, order = I.top_losses(run.losses, k, largest=S.get(S.E_ORDER) == "largest")
    grid(run, order, cam_toggle=True)


# ------------------------------------------------------------------------------------------------
# Cleaner

def _decisions(run) -> dict[str, str]:
    return st.session_state[S.E_DECISIONS].setdefault(run.info.id, {})


def _on_decision(run_id: str, path: str, key: str) -> None:
    # After Apply the widget keys are dropped, but the browser may still report the old value
    # once; such an echo has nothing to record.
    value = st.session_state.get(key)
    if value is not None:
        st.session_state[S.E_DECISIONS].setdefault(run_id, {})[path] = value


def _split_files(run, root: Path, class_name: str) -> list[str]:
    """Training files of one class: the class folder (train/<class> when the data set has
    train/ and valid/), minus the run's validation files."""
    folder = root / "train" / class_name if (root / "train").is_dir() else root / class_name
    valid = {p for p, _ in run.items}
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and not p.is_symlink() and str(p) not in valid)


def cleaner_items(run, root: Path, split: str, cls: int) -> list[tuple[str, float, int]]:
    """(path, loss, predicted class) of one class and side, largest loss first; files that are
    no longer there (cleaned away) are left out."""
    if split == "valid":
        idx = np.flatnonzero(run.targets == cls)
        rows = [(run.items[i][0], float(run.losses[i]), int(run.probs[i].argmax())) for i in idx]
    else:
        cache = st.session_state[S.E_TRAIN_LOSSES]
        key = (run.info.id, cls)
        if key not in cache:
            files = _split_files(run, root, run.classes[cls])
            ckpt = checkpoint(run)
            with st.spinner(f"Scoring {min(len(files), TRAIN_CAP)} training images with the model…"):
                ok, probs, losses = I.predict_files(
                    ckpt.model, files[:TRAIN_CAP], cls, size=int(ckpt.meta["size"]),
                    mean=ckpt.meta["mean"], std=ckpt.meta["std"])
            cache[key] = [(p, float(l), int(pr.argmax())) for p, l, pr in zip(ok, losses, probs)]
        rows = cache[key]
    rows = [r for r in rows if os.path.exists(r[0])]
    return sorted(rows, key=lambda r: -r[1])


def _private_data(root, owner: str) -> bool:
    """Whether a data folder belongs to this browser session alone (its uploads, or its demo copy)."""
    base = data_dir().resolve()
    root = Path(root).resolve()
    mine = [base / "sessions" / owner,
            base / "explore-demo"]  # demo copies are named after a hash of the owner, checked below
    if root.is_relative_to(mine[0]):
        return True
    prefix = f"digits-{hashlib.sha256(owner.encode()).hexdigest()[:10]}-"
    return root.parent == mine[1] and root.name.startswith(prefix)


def clean_section(run, owner: str, read_only: bool) -> None:
    st.write("Look at the images the model found hardest, class by class. Keep an image, delete it "
             "(it is moved to a quarantine folder, never erased) or move it to the class it really "
             "belongs to. Your choices stay while you switch class or side; Apply carries them out "
             "and Undo puts every file back.")
    if read_only:
        st.info("This run was shared with you, so its data cannot be changed here. You can still "
                "look at its images below.")
    try:
        root = CL.data_root([p for p, _ in run.items])
    except CL.CleanError as exc:
        st.error(str(exc))
        return
    if not read_only and not _private_data(root, owner):
        read_only = True
        st.info("This run was trained on a data set every user of this server shares, so it cannot "
                "be cleaned here: a change would reach everyone. Upload your own copy as a zip on "
                "the Train page (or make a demo run) to clean it.")
    msg = st.session_state.pop(S.E_CLEAN_MSG, None)
    if msg:
        (st.success if msg[0] == "success" else st.error)(msg[1])
    c = st.columns([1, 2, 1])
    split = c[0].radio("Side", ["valid", "train"], key=S.E_CLEAN_SPLIT, horizontal=True,
                       format_func={"valid": "validation", "train": "training"}.get)
    if S.get(S.E_CLEAN_CLASS) not in run.classes:
        S.set_value(S.E_CLEAN_CLASS, run.classes[0])
    cls_name = c[1].selectbox("Class folder", run.classes, key=S.E_CLEAN_CLASS)
    n_show = c[2].number_input("Images shown", 4, 96, step=4, key=S.E_CLEAN_N)
    cls = run.classes.index(cls_name)
    try:
        rows = cleaner_items(run, root, split, cls)
    except ENGINE_ERRORS as exc:
        st.error(f"The images of this class could not be scored: {exc}")
        rows = []
    decisions = _decisions(run)
    options = [CL.KEEP, CL.DELETE] + [CL.relabel(c) for c in run.classes if c != cls_name]
    fmt = {CL.KEEP: "keep", CL.DELETE: "delete (quarantine)",
           **{CL.relabel(c): f"move to {c}" for c in run.classes}}
    if not rows:
        st.write("No images left in this class folder.")
    with st.container(key="explore-cleaner-grid"):
        for start in range(0, min(len(rows), int(n_show)), GRID):
            cols = st.columns(GRID)
            for col, (path, loss, pred) in zip(cols, rows[start:start + GRID]):
                with col:
                    picture = thumb(path)
                    if picture is not None:
                        st.image(picture, width=THUMB)
                    st.caption(f"{md(Path(path).name)} · loss {max(loss, 0.0):.3f} · predicted "
                               f"**{md(run.classes[pred])}**")
                    key = S.E_DECISION.format(hashlib.sha1(path.encode()).hexdigest()[:16])
                    if key not in st.session_state or st.session_state[key] not in options:
                        st.session_state[key] = decisions.get(path, CL.KEEP) \
                            if decisions.get(path, CL.KEEP) in options else CL.KEEP
                    st.selectbox("Decision", options, key=key, format_func=fmt.get,
                                 label_visibility="collapsed", disabled=read_only,
                                 on_change=_on_decision, args=(run.info.id, path, key))
    pending = {p: d for p, d in decisions.items() if d != CL.KEEP}
    st.write(f"**{len(pending)}** change{'s' * (len(pending) != 1)} chosen "
             f"({sum(d == CL.DELETE for d in pending.values())} to delete, "
             f"{sum(d.startswith(CL.MOVE) for d in pending.values())} to move).")
    b = st.columns([1, 1, 2])
    if b[0].button("Apply", type="primary", key="explore.apply", disabled=read_only or not pending):
        try:
            journal = CL.apply_decisions(root, pending, classes=run.classes, owner=owner,
                                         run_owner=run.info.owner, run_id=run.info.id)
        except CL.CleanError as exc:
            st.session_state[S.E_CLEAN_MSG] = ("error", str(exc))
        else:
            st.session_state[S.E_JOURNAL][run.info.id] = journal.id
            _forget_choices(run)
            st.session_state[S.E_CLEAN_MSG] = ("success", f"Applied: {journal.summary()} Deleted "
                                               "files are in a quarantine folder; Undo brings every "
                                               "file back.")
        st.rerun()
    jid = st.session_state[S.E_JOURNAL].get(run.info.id)
    if b[1].button("Undo", key="explore.undo", disabled=read_only or not jid):
        try:
            journal = CL.undo(jid, owner=owner)
        except CL.CleanError as exc:
            st.session_state[S.E_CLEAN_MSG] = ("error", str(exc))
        else:
            st.session_state[S.E_JOURNAL].pop(run.info.id, None)
            st.session_state[S.E_TRAIN_LOSSES] = {}
            st.session_state[S.E_CLEAN_MSG] = ("success", f"Undone: every file is back where it "
                                               f"was ({len(journal.moves)} moved back).")
        st.rerun()
    if b[2].button("Retrain with the cleaned data", key="explore.retrain", disabled=read_only):
        st.session_state[S.E_RETRAIN] = {**run.settings, "arch": run.info.arch,
                                         "data": run.info.data, "data_folder": str(root),
                                         "from_run": run.info.id}
        try:
            st.switch_page("pages/train.py")
        except Exception:  # no Train page in this copy of the app, or not in the navigation
            st.info("The settings are saved for the Train page, but it is not available here.")
    st.caption(f"Data folder: {md(root)}")


def _forget_choices(run) -> None:
    st.session_state[S.E_DECISIONS][run.info.id] = {}
    st.session_state[S.E_TRAIN_LOSSES] = {}
    for key in [k for k in st.session_state if str(k).startswith("explore.dec.")]:
        del st.session_state[key]


# ------------------------------------------------------------------------------------------------
# Predict

@st.cache_data(show_spinner=False, max_entries=8)
def _decode(data: bytes) -> np.ndarray:
    return load_image(data)


def prob_figure(classes: list[str], probs: np.ndarray) -> dict:
    order = np.argsort(-probs, kind="stable")[:15][::-1]
    return {"data": [{"type": "bar", "orientation": "h", "x": [float(probs[i]) for i in order],
                      "y": [plotly_text(classes[i]) for i in order],
                      "marker": {"color": ["#fde725" if i == order[-1] else "#3b496c" for i in order]},
                      "texttemplate": "%{x:.1%}", "textposition": "outside",
                      "hovertemplate": "%{y}: %{x:.2%}<extra></extra>"}],
            "layout": {"height": 60 + 26 * len(order), "margin": {"l": 10, "r": 40, "t": 10, "b": 30},
                       "xaxis": {"range": [0, 1.15], "tickformat": ".0%", "title": {"text": "probability"}},
                       # category: class names such as "0".."9" must not become a number axis
                       "yaxis": {"automargin": True, "type": "category"}}}


def predict_section(run) -> None:
    st.write("This is the model in production: a saved file, the class order it was trained with, "
             "and the same preprocessing as the validation images, predicting one photo on the CPU.")
    source = st.radio("Photo", ["valid", "upload", "webcam"], key=S.E_PRED_SOURCE, horizontal=True,
                      format_func={"valid": "a validation image", "upload": "upload",
                                   "webcam": "webcam"}.get)
    image, name = None, ""
    if source == "valid":
        n = len(run.items)
        if n == 0:
            st.write("This run has no validation images.")
            return
        i = int(st.number_input("Validation image number", 0, n - 1, key=S.E_PRED_ITEM))
        try:
            image, name = load_image(run.items[i][0]), Path(run.items[i][0]).name
        except (ImageError, OSError):
            st.error("That validation image has moved (perhaps cleaned); pick another number.")
            return
    else:
        file = (st.file_uploader("PNG, JPEG, WebP, GIF, BMP or TIFF", type=UPLOAD_TYPES,
                                 key="explore.upload") if source == "upload"
                else st.camera_input("Take a photo", key="explore.camera"))
        if file is None:
            return
        try:
            image, name = _decode(file.getvalue()), getattr(file, "name", "webcam photo")
        except ImageError as exc:
            st.error(str(exc))
            return
    try:
        ckpt = checkpoint(run)
        t0 = time.perf_counter()
        cls_name, idx, probs = ckpt.predict(image, device="cpu")
        seconds = time.perf_counter() - t0
        from engine.data import resize_crop
        from engine.models import preprocess_image
        t1 = time.perf_counter()
        x = preprocess_image(image, int(ckpt.meta["size"]), ckpt.meta["mean"], ckpt.meta["std"])
        cam = I.grad_cam(ckpt.model, x, idx)
        cam_seconds = time.perf_counter() - t1
        over = I.overlay(resize_crop(image, CAM_SIDE), cam, alpha=float(S.get(S.E_CAM_ALPHA)),
                         cmap=S.get(S.E_CMAP))
    except ENGINE_ERRORS + (ValueError,) as exc:
        st.error(f"The prediction failed: {exc}")
        return
    left, right = st.columns([1, 2])
    with left:
        st.image(encode_jpeg(resize_to_fit(image, 320)), caption=None, width=260)
        st.image(over, width=260)
        st.caption(f"Grad-CAM for {md(cls_name)} ({cam_seconds * 1000:.0f} ms)")
    with right:
        st.markdown(f"### {md(cls_name)} — {probs[idx]:.1%}")
        st.caption(f"{md(name)} · predicted in **{seconds * 1000:.1f} ms** on the CPU "
                   f"(resize, normalise, one forward pass) at {int(ckpt.meta['size'])} px.")
        st.plotly_chart(prob_figure(run.classes, probs), key="explore.probs",
                        config={"displayModeBar": False})


# ------------------------------------------------------------------------------------------------
# Export

def export_section(run) -> None:
    from engine.export import run_zip, zip_name

    st.write("Take the model with you: the weights as a safetensors file (tensors only — opening "
             "it cannot run code), a JSON file with the class order, architecture, input size and "
             "normalisation, and a README showing how to load it with "
             "`engine.models.load_checkpoint`.")
    size = run.checkpoint.stat().st_size if run.checkpoint.is_file() else 0
    st.download_button(f"Download the model ({size / 1e6:.1f} MB zip)", data=lambda: run_zip(run),
                       file_name=zip_name(run), mime="application/zip", key="explore.download",
                       on_click="ignore", icon=":material/download:")


# ------------------------------------------------------------------------------------------------

def main() -> None:
    init_state()
    st.title("Explorer")
    st.write("Look at what a trained model gets wrong, clean the data behind it, and use it on a "
             "new photo.")
    owner = S.owner_token()
    try:
        run = pick_run(owner)
    except ENGINE_ERRORS as exc:
        st.error(str(exc))
        run = None
    if run is None:
        no_run(owner)
        S.remember(WIDGETS)
        return
    read_only = run.info.owner != owner
    if read_only:
        st.info("You opened a run someone shared with a link: you can look at it and predict with "
                "it, but not change its data.")
    S.remember(WIDGETS)
    urlstate.sync(PAGE)
    tabs = st.tabs(["Mistakes", "Top losses", "Clean", "Predict", "Export"])
    sections = [lambda: mistakes(run), lambda: top_losses_section(run),
                lambda: clean_section(run, owner, read_only), lambda: predict_section(run),
                lambda: export_section(run)]
    for tab, draw in zip(tabs, sections):
        with tab:
            try:
                draw()
            except ENGINE_ERRORS as exc:
                st.error(str(exc))
    S.remember(WIDGETS)


ensure_app_navigation()
main()
