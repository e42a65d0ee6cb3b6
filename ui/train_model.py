"""Section 2 of the Train page: the architecture, pretrained weights, image and batch size, and
where training will run."""
from __future__ import annotations

import streamlit as st

from engine.device import default_device
from engine.settings import ARCHS, BATCH_SIZES, PRECISIONS, PRETRAINED_ARCHS, SIZES
from engine.weights import can_download, pretrained_cached
from ui import state


@st.cache_data(show_spinner=False, ttl=300)
def weights_downloadable() -> bool:
    return can_download()


PRECISION_LABELS = {"auto": "auto (bf16 on a GPU, fp32 on a CPU)", "fp32": "fp32 (32-bit float)",
                    "bf16": "bf16 (16-bit bfloat)", "fp16": "fp16 (16-bit float, loss scaling)"}


def model_section() -> None:
    st.subheader("2 · Model")
    c1, c2, c3, c4 = st.columns([3, 2, 1, 1])
    c1.selectbox("Architecture", list(ARCHS), key=state.T_ARCH,
                 format_func=lambda a: f"{a} — {ARCHS[a]}")
    arch = state.get(state.T_ARCH)
    can_pre = arch in PRETRAINED_ARCHS
    c2.checkbox("Start from ImageNet weights (pretrained)", key=state.T_PRETRAINED,
                disabled=not can_pre,
                help="Transfer learning: reuse a network trained on 1.3 million photos and train a "
                     "new last layer for our classes.")
    c3.selectbox("Image size", SIZES, key=state.T_SIZE)
    c4.selectbox("Batch size", BATCH_SIZES, key=state.T_BS)
    if state.get(state.T_PRETRAINED) and can_pre and not pretrained_cached(arch):
        if not weights_downloadable():
            st.warning(f"The ImageNet weights for {arch} are not on this machine and it cannot "
                       "download them (no internet). Choose efficientnet_lite0, whose weights "
                       "ship with the app, or untick “pretrained” to train from scratch.")
        else:
            st.caption(f"The ImageNet weights for {arch} will be downloaded once when training "
                       "starts.")
    elif not can_pre:
        st.caption(f"{arch} has no pretrained weights: it learns from random numbers.")
    dev = default_device()
    st.caption(f"Device in use: **{dev.type.upper()}**"
               + ("" if dev.type != "cpu" else " — training runs on the processor; small images "
                  "and small models keep it quick."))
    c1, c2 = st.columns([3, 2])
    c1.checkbox("Frozen body's batch norm keeps learning (train_bn)", key=state.T_TRAIN_BN,
                disabled=not (can_pre and state.get(state.T_PRETRAINED)),
                help="While the pretrained body is frozen, its batch-norm layers still adjust "
                     "their averages (and scales) to your images, as fastai does by default. "
                     "Untick to keep ImageNet's values until the body is unfrozen.")
    c2.selectbox("Arithmetic", PRECISIONS, key=state.T_PRECISION, format_func=PRECISION_LABELS.get,
                 help="auto: 16-bit bfloat16 on a GPU that has it (faster, less memory), 32-bit "
                      "float on a processor. fastai trains in 32 bits unless asked otherwise.")


__all__ = ["model_section"]
