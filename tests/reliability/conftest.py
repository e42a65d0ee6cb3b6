"""Fixtures of the reliability tests: one real `streamlit run` on 127.0.0.1 with its own data folder.

The browser fixtures (Chromium, a page per test, screenshots on failure) are in tests/conftest.py.
"""
from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, free_port, start_streamlit, stop, wait_healthy


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of this test module: (base URL, its process, its data folder); stopped at the end."""
    ARTIFACTS.mkdir(exist_ok=True)
    data = tmp_path_factory.mktemp("dllab-data")
    port = free_port()
    proc = start_streamlit(port, {"DLLAB_DATA": str(data)})
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}", proc, data
    finally:
        stop(proc)
