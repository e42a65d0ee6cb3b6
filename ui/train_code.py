"""The Train page's "the code for these settings": the fastai code that trains as the page's
settings do, and a plain PyTorch outline of the same run, both built by engine.code_view from the
one RunSettings the page's jobs are given, shown in copyable code blocks."""
from __future__ import annotations

import streamlit as st

from engine.code_view import fastai_code, pytorch_outline
from engine.settings import RunSettings
from ui import state


def code_section(settings: RunSettings) -> None:
    """Both texts in an expander; they follow every widget above (data, model, method, rates)."""
    with st.expander("The code for these settings", expanded=False):
        st.caption("The same run written as code you could type into a notebook: first with "
                   "fastai, as the lesson does, then as plain PyTorch, which shows what fastai "
                   "does for you. Change a setting above and the code follows. Copy it with the "
                   "button at the top right of each box.")
        fastai_tab, torch_tab = st.tabs(["fastai", "plain PyTorch (outline)"])
        with fastai_tab, st.container(key=state.T_CODE.format("fastai")):
            st.code(fastai_code(settings), language="python")
        with torch_tab, st.container(key=state.T_CODE.format("pytorch")):
            st.code(pytorch_outline(settings), language="python")
            st.caption("An outline: fastai's data augmentation and its careful weight-decay groups "
                       "are summarised in comments. The one-cycle schedule, the optimiser and "
                       "the layer groups are those the app trains with.")


__all__ = ["code_section"]
