"""Deep Learning Lab: the home page and the navigation (the one place that lists the pages).

Run with `make run`. The home page must be interactive before torch has finished importing, so the
device check runs on a background thread and is drawn when it is ready.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import streamlit as st

# engine is imported first: it sets OMP_WAIT_POLICY before anything loads torch
from engine.system import library_versions, start_memory_sweeper, warm_imports
from ui import state

st.set_page_config(page_title="Deep Learning Lab", page_icon=":material/science:", layout="wide")

LESSON_PATH = [
    ("Kernel Playground", "pages/kernels.py", ":material/grid_on:",
     "A picture is a grid of numbers. Slide a 3×3 kernel over it — multiply element by element, add "
     "— and edges, blur or sharpening appear. Stack kernels with ReLU between them, then watch "
     "gradient descent find a hidden kernel on its own: that is what a convolutional layer learns."),
    ("SGD", "pages/sgd.py", ":material/trending_down:",
     "The whole training loop on two numbers: fit a line by gradient descent and see what the "
     "learning rate does — too small crawls, too large overshoots and blows up."),
    ("Fit and overfit", "pages/overfit.py", ":material/ssid_chart:",
     "Underfitting and overfitting on a problem you can see whole: polynomials of degree 1 to 15 "
     "through noisy points. The training loss keeps falling, the held-out loss falls and rises "
     "again; weight decay tames the wiggles."),
    ("Train", "pages/train.py", ":material/model_training:",
     "The same loop at scale: a pretrained network, the LR finder, fit_one_cycle and fine_tune on "
     "digits, pets or your own images, with live loss curves."),
    ("Explorer", "pages/explore.py", ":material/search:",
     "Look at what the model got wrong: confusion matrix, top losses with Grad-CAM, clean the data, "
     "and predict a new photo."),
]


#: The lesson's ideas each page lets a learner touch, in the order the page meets them.
CONCEPTS = {
    "Kernel Playground": "a picture is numbers · a kernel · edge detectors · ReLU · layers · "
                         "learned kernels",
    "SGD": "a model is a function · loss · gradient · learning rate · mini-batch, SGD, epoch · "
           "parameters vs architecture",
    "Fit and overfit": "underfitting · overfitting · held-out data · weight decay",
    "Train": "transfer learning · validation set · LR finder · one-cycle · freeze / unfreeze and "
             "discriminative rates · what goes wrong (the lesson's experiments, the coach, runs "
             "side by side) · weight decay and dropout · your own data set",
    "Explorer": "probabilities and argmax · error rate · confusion matrix · top losses · cleaning "
                "data · inference on a CPU",
}


@st.cache_resource(show_spinner=False)
def _device_future() -> Future:
    """Import torch, OpenCV and the samples once per server process, in the background."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-imports").submit(warm_imports)


@st.cache_resource(show_spinner=False)
def _memory_sweeper() -> object:
    """Once per server process: every minute, free what closed sessions left and hand it back to
    the system (engine.system.sweep_memory)."""
    try:
        period = max(1.0, float(os.environ.get("DLLAB_MEMORY_SWEEP_S") or 60))
    except ValueError:    # a typo in the server's settings must not stop the app
        period = 60.0
    return start_memory_sweeper(period)


@st.cache_resource(show_spinner=False)
def _heap_probe(path: str) -> object:
    """Memory tests only (DLLAB_HEAP_LOG): log the traced Python heap and the session count."""
    from engine.system import start_heap_probe

    def sessions() -> int:
        from streamlit import runtime
        return len(runtime.get_instance()._session_mgr.list_sessions())   # no public count

    return start_heap_probe(path, sessions, frames=int(os.environ.get("DLLAB_HEAP_FRAMES") or 1))


def home() -> None:
    st.title("Deep Learning Lab")
    st.write("An interactive companion to the first two lessons of practical deep learning. "
             "Follow the pages in order, or jump to any of them from the menu on the left.")
    st.subheader("Lesson path")
    for number, (title, path, icon, text) in enumerate(LESSON_PATH, start=1):
        with st.container(border=True):
            if os.path.exists(path):
                st.page_link(path, label=f"**{number}. {title}**", icon=icon)
            else:
                st.markdown(f"**{number}. {title}** — _not built yet_")
            st.write(text)
            st.caption(f"Ideas: {CONCEPTS[title]}")

    st.subheader("This machine")
    # Poll only while torch is still loading; once it is, draw the panel without a timer.
    st.fragment(_device_panel, run_every=None if _device_future().done() else 1.0)()
    with st.expander("Library versions"):
        versions = library_versions()
        st.table({"library": list(versions), "version": list(versions.values())})


def _device_panel() -> None:
    future = _device_future()
    if not future.done():
        st.session_state[state.H_DEVICE_POLLING] = True
        st.info("Compute device: checking (PyTorch is still loading in the background)…")
        return
    if st.session_state.get(state.H_DEVICE_POLLING):
        st.session_state[state.H_DEVICE_POLLING] = False
        st.rerun()  # redraw the page once so the panel stops polling
    try:
        st.success(f"Compute device: {future.result()['label']}")
    except Exception as exc:  # a broken torch install must not break the home page
        st.warning(f"PyTorch could not be loaded ({exc}); the pages that train models will not work.")


def main() -> None:
    _device_future()  # whichever page a visitor opens first, heavy imports start in the background
    _memory_sweeper()
    if os.environ.get("DLLAB_HEAP_LOG"):
        _heap_probe(os.environ["DLLAB_HEAP_LOG"])
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    for title, path, icon, _ in LESSON_PATH:
        if os.path.exists(path):
            pages.append(st.Page(path, title=title, icon=icon))
    page = st.navigation(pages)
    state.persist_owner_cookie()  # every page: a reload keeps this browser's jobs, uploads and runs
    timing_log = os.environ.get("DLLAB_TIMING_LOG")
    if not timing_log:
        page.run()
        return
    # Load tests: how long each run of a page's script takes inside the server (bench/load_test.py).
    t0 = time.perf_counter()
    try:
        page.run()
    finally:
        with open(timing_log, "a") as f:
            f.write(f"{time.time():.3f}\t{page.url_path or 'home'}\t{time.perf_counter() - t0:.4f}\n")


main()
