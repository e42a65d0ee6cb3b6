"""Case 5 of issue 8, at the level of the pages: a session's uploaded data set and its runs are
listed to nobody else. (Two real browsers and their uploads: test_upload_endpoint.py; the job
queue by owner: tests/engine/test_jobs.py::test_owner_isolation; the run store by owner:
tests/engine/test_runs.py.)"""
from __future__ import annotations

import io
import zipfile

from streamlit.testing.v1 import AppTest

from engine.data import extract_zip
from engine.paths import session_dir
from tests.browser.conftest import ROOT
from tests.reliability.test_html_names import make_run, make_set
from ui import state

ALICE, BOB = "A" * 22, "B" * 22


def page(name: str, owner: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=120)
    at.session_state[state.SESSION_OWNER] = owner
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_second_session_sees_none_of_the_first_ones_data_or_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    # Alice uploads a zip of class folders (the Train page extracts it into her session folder)
    # and trains on it.
    source = make_set(tmp_path / "made")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(source.rglob("*.png")):
            zf.write(f, f.relative_to(source).as_posix())
    buf.seek(0)
    mine = extract_zip(buf, session_dir(ALICE) / "zip-mine")
    run = make_run(mine, ALICE)

    # Bob: no folder to pick (uploads are not "folders on the server"), no run, nothing to explore.
    train = page("train", BOB)
    train.radio(key=state.T_SOURCE).set_value("folder").run()
    assert any("No folders yet" in i.value for i in train.info)
    assert all(s.key != state.T_FOLDER for s in train.selectbox)
    assert any("Each finished or cancelled training run is saved here" in c.value
               for c in train.caption)
    explore = page("explore", BOB)
    assert any("no trained model" in i.value for i in explore.info)
    assert all(s.key != state.E_RUN for s in explore.selectbox)

    # Alice still has both.
    explore = page("explore", ALICE)
    assert explore.selectbox(key=state.E_RUN).value == run.id
    assert not explore.error
