"""The Train page when the Ray cluster cannot be reached (issue 13): a sentence on the page (and in
the server's log), Train fails with the same sentence instead of waiting, and the other pages,
which never use the job runner, keep working."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.browser.conftest import free_port
from ui import state

PAGES = Path(__file__).resolve().parents[2] / "pages"
pytestmark = pytest.mark.slow


def test_an_unreachable_cluster_is_a_sentence_on_the_train_page_only(monkeypatch, tmp_path):
    from ui.job_panel import runner

    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    monkeypatch.setenv("DLLAB_RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("DLLAB_RAY_CONNECT_S", "1")
    runner.clear()                       # this test's runner, from the variables above
    try:
        at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=120).run()
        assert not at.exception, at.exception
        deadline = time.monotonic() + 30
        while not any("did not answer within 1 s" in e.value for e in at.error):
            assert time.monotonic() < deadline, [e.value for e in at.error]
            time.sleep(0.5)
            at.run()
        sentence = next(e.value for e in at.error if "did not answer" in e.value)
        assert "DLLAB_RAY_ADDRESS" in sentence
        at.button(key=state.T_START).click().run()
        for _ in range(20):              # the failed job is taken in by the page's next runs
            at.run()
            if at.session_state[state.T_JOB_ERROR] if state.T_JOB_ERROR in at.session_state \
                    else None:
                break
            time.sleep(0.2)
        assert at.session_state[state.T_JOB_ERROR] == sentence
        assert [e.value for e in at.error].count(sentence) == 1     # said once, not twice
        for page in ("kernels.py", "sgd.py", "explore.py"):
            other = AppTest.from_file(str(PAGES / page), default_timeout=120).run()
            assert not other.exception and not other.error, page
    finally:
        runner.clear()
