"""The Explorer's "Mistakes" and "Top losses" tabs: confusion matrix (click a cell to see its
images), most confused pairs, per-class scores, and the images with the largest loss."""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine import interpret
from engine.runs import Run
from ui import state
from ui.explore_common import GRID, grid, md, tile
from ui.explore_figs import cm_figure

CELL_IMAGES = 24            # most images shown for one clicked cell
NO_VALIDATION = ("This run has no validation set: every class had a single image, so none was "
                 "held out, and there is no accuracy to measure and no mistake to show. Add "
                 "images on the Train page so that each class has at least two, and train again. "
                 "The Predict tab still takes an uploaded photo.")


def no_validation(run: Run) -> bool:
    """Say so, instead of NaN figures, when the run had no validation images."""
    if len(run.items):
        return False
    st.info(NO_VALIDATION)
    return True


def _on_cm_click() -> None:
    points = (st.session_state.get(state.E_CM) or {}).get("selection", {}).get("points", [])
    if points:
        st.session_state[state.E_CELL] = (int(points[0]["y"]), int(points[0]["x"]))


def mistakes(run: Run) -> None:
    """Headline numbers, the confusion matrix, most confused pairs and per-class scores."""
    if no_validation(run):
        return
    n = len(run.classes)
    cm = interpret.confusion_matrix(run.targets, run.preds, n)
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
        st.radio("Show", ["counts", "rows"], key=state.E_CM_MODE, horizontal=True,
                 format_func={"counts": "image counts", "rows": "share of each actual class"}.get)
        st.plotly_chart(cm_figure(cm, run.classes, state.get(state.E_CM_MODE) == "rows"), key=state.E_CM,
                        on_select=_on_cm_click, selection_mode="points", width="stretch",
                        config={"displayModeBar": False})
        st.caption("Row = the real class, column = what the model said. The diagonal is right; "
                   "everything off it is a mistake. Click a cell to see its images.")
    with right:
        st.subheader("Most confused")
        min_val = st.number_input("Show pairs with at least this many images", 1, 10_000,
                                  key=state.E_MIN_VAL)
        pairs = interpret.most_confused(cm, run.classes, int(min_val))
        if pairs:
            st.dataframe({"actual": [a for a, _, _ in pairs], "predicted": [p for _, p, _ in pairs],
                          "images": [c for _, _, c in pairs]}, hide_index=True, height=260)
        else:
            st.write("No pair of classes is mixed up that often.")
        st.subheader("Per class")
        scores = interpret.class_scores(cm, run.classes).rows()
        st.dataframe(scores, hide_index=True, height=260, column_config={
            k: st.column_config.NumberColumn(k, format="percent") for k in
            ("accuracy", "precision", "recall")})
        st.caption("**Precision**: of the images called this class, the share that really are. "
                   "**Recall**: of the images that really are this class, the share the model "
                   "found. **Accuracy** here is one class against the rest: the share of all "
                   "images correctly put in or out of this class.")
    cell_images(run)


def cell_images(run: Run) -> None:
    """The images of the clicked cell (actual a, predicted p), largest loss first."""
    cell = st.session_state.get(state.E_CELL)
    if cell is None or max(cell) >= len(run.classes):
        return
    a, p = cell
    idx = np.flatnonzero((run.targets == a) & (run.preds == p))
    idx = idx[np.argsort(-run.losses[idx], kind="stable")]
    head = st.columns([4, 1])
    head[0].markdown(f"#### Actual {md(run.classes[a])}, predicted {md(run.classes[p])}: "
                     f"{len(idx)} image{'s' * (len(idx) != 1)}")
    if head[1].button("Close", key=state.E_CELL_CLOSE):
        st.session_state[state.E_CELL] = None
        st.rerun()
    if len(idx) > CELL_IMAGES:
        st.caption(f"The {CELL_IMAGES} with the largest loss:")
    with st.container(key=state.E_CELL_IMAGES):
        grid(run, idx[:CELL_IMAGES])


def top_losses_section(run: Run) -> None:
    """The k images with the largest (or smallest) loss, each with a Grad-CAM toggle."""
    st.write("The images with the largest loss are those the model was most confidently wrong "
             "about, or least sure of. They are often mislabelled pictures rather than model "
             "mistakes — that is what the cleaner is for.")
    st.caption("Under each image: p(actual), the probability the model gave the class the image "
               "really belongs to, and the loss worked out from it, −ln p(actual). A sure right "
               "answer has p near 1 and a loss near 0; the smaller p, the larger the loss — check "
               "it on a calculator.")
    if no_validation(run):
        return
    c = st.columns(4)
    n = len(run.losses)
    if state.get(state.E_K, 8) > max(n, 1):
        state.set_value(state.E_K, max(n, 1))
    k = c[0].slider("Images", 1, max(1, min(48, n)), key=state.E_K) if n > 1 else n
    c[1].radio("Order", ["largest", "smallest"], key=state.E_ORDER, horizontal=True,
               format_func={"largest": "largest loss first", "smallest": "smallest first"}.get)
    c[2].slider("Grad-CAM opacity", 0.0, 1.0, step=0.05, key=state.E_CAM_ALPHA)
    c[3].radio("Colour map", list(interpret.COLORMAPS), key=state.E_CMAP, horizontal=True,
               help="Both maps stay readable with colour-vision deficiencies and in greyscale.")
    st.caption("Grad-CAM: the gradient of the predicted class's score tells how much each feature "
               "map of the last convolutional layer matters; their weighted sum shows where in the "
               "picture the evidence was found (bright = strong).")
    _, order = interpret.top_losses(run.losses, k, largest=state.get(state.E_ORDER) == "largest")
    loss_grid(run, order)


def loss_caption(p_actual: float) -> str:
    """p(actual) and the loss computed from it, as a tile shows them."""
    return (f"p(actual) = {p_actual:.4g} → loss = −ln {p_actual:.4g} = "
            f"{interpret.loss_from_prob(p_actual):.3f}")


def loss_grid(run: Run, indices: np.ndarray) -> None:
    """Top-loss tiles, GRID to a row, each with p(actual) and −ln p(actual) under it."""
    p_actual = interpret.actual_probs(run.probs, run.targets)
    for start in range(0, len(indices), GRID):
        cols = st.columns(GRID)
        for col, i in zip(cols, indices[start:start + GRID]):
            with col:
                tile(run, int(i), cam_toggle=True)
                st.caption(loss_caption(float(p_actual[int(i)])))
