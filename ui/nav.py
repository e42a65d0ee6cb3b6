"""Make every page run inside app.py's navigation, even as a fresh server's very first request.

Until some script run has called st.navigation, Streamlit treats a `pages/` folder the old way and
runs a page file directly (no home page, no page titles, no wide layout). A shared link opened on a
freshly started server hits exactly that case, so a page detects it and reruns through app.py.
"""
from __future__ import annotations

import streamlit as st


def ensure_app_navigation() -> None:
    """Call first in every page file; a no-op when app.py's st.navigation is already in charge."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation itself sets
        st.rerun()
