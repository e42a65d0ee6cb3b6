"""AppTest for the Train page's additions: after unfreezing, the LR finder's pick fills either end
of slice(lo, hi) (with the lesson's default), and "the code for these settings"."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import state

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "train.py")
FINDER = {"lrs": [1e-6 * 1.2 ** i for i in range(60)], "losses": [2.0 - 0.01 * i for i in range(60)],
          "suggestions": {"valley": 2.3e-5, "steep": 4.1e-4, "minimum": None, "slide": 1.1e-3}}


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A saved run whose settings say it trained (frozen) at lr 3e-3, in its own data dir."""
    from engine.runs import runs_dir
    from tests.pages.test_explore import make_fake_run

    data = tmp_path_factory.mktemp("unfreeze-data")
    mp = pytest.MonkeyPatch()
    mp.setenv("DLLAB_DATA", str(data))
    run_id, _ = make_fake_run(data)
    path = runs_dir() / run_id / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "lr": 3e-3}))
    yield run_id
    mp.undo()


def unfreezing(run_id: str | None = None) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.session_state[state.T_LR_FIND] = FINDER
    app.session_state[state.T_LAST_RESULT] = {"kind": "train", "run_id": run_id, "epochs": [],
                                              "batches": [], "cancelled": False}
    app.run()
    app.radio(key=state.T_METHOD).set_value("unfreeze").run()
    assert not app.exception
    return app


def test_the_pick_goes_into_lo_or_hi(frozen_run):
    at = unfreezing(frozen_run)
    assert at.button(key=state.T_USE_LR.format("steep")).label.startswith("Pick steep")
    at.button(key=state.T_USE_LR.format("steep")).click().run()
    hi_before = at.number_input(key=state.T_LR).value
    at.button(key=state.T_LR_TO.format("lo")).click().run()
    assert at.number_input(key=state.T_LR_LO).value == pytest.approx(4.1e-4)
    assert at.number_input(key=state.T_LR).value == hi_before        # hi untouched
    at.button(key=state.T_USE_LR.format("slide")).click().run()
    at.button(key=state.T_LR_TO.format("hi")).click().run()
    assert at.number_input(key=state.T_LR).value == pytest.approx(1.1e-3)
    assert at.number_input(key=state.T_LR_LO).value == pytest.approx(4.1e-4)
    assert at.query_params["lo"] == "0.00041" and at.query_params["lr"] == "0.0011"
    assert not at.warning


def test_the_lessons_rule_lo_is_the_valley_hi_a_tenth_of_the_frozen_rate(frozen_run):
    at = unfreezing(frozen_run)
    button = at.button(key=state.T_LR_LESSON)
    assert "2.3e-05" in button.label and "3.0e-04" in button.label
    button.click().run()
    assert at.number_input(key=state.T_LR_LO).value == pytest.approx(2.3e-5)
    assert at.number_input(key=state.T_LR).value == pytest.approx(3e-4)
    assert any("slice(2.30e-05, 3.00e-04)" in m.value for m in at.markdown)


def test_lo_above_hi_is_a_warning(frozen_run):
    at = unfreezing(frozen_run)
    at.number_input(key=state.T_LR).set_value(1e-5).run()
    at.button(key=state.T_USE_LR.format("slide")).click().run()
    at.button(key=state.T_LR_TO.format("lo")).click().run()
    assert any("lo is larger than hi" in w.value for w in at.warning)


def test_a_finished_finder_fills_the_slice_the_lessons_way():
    """take_in_lr_find after unfreezing: lo = valley, hi = frozen rate / 10 (here the page's rate,
    as the last run cannot be read); otherwise the valley is the rate used next, as before."""
    def script():
        import streamlit as st

        from ui import state
        from ui.train_lr import take_in_lr_find

        class Done:
            result = {"lrs": [1e-5, 1e-4], "losses": [1.0, 0.5],
                      "suggestions": {"valley": 5e-5, "steep": None}}

        method = st.session_state["method"]
        state.set_value(state.T_METHOD, method)
        state.set_value(state.T_LR, 2e-3)
        state.set_value(state.T_LR_LO, 1e-6)
        take_in_lr_find(Done())
        st.write(f"lo={state.get(state.T_LR_LO)} hi={state.get(state.T_LR)}")

    for method, want in (("unfreeze", "lo=5e-05 hi=0.0002"), ("fit_one_cycle", "lo=1e-06 hi=5e-05")):
        app = AppTest.from_function(script, default_timeout=60)
        app.session_state["method"] = method
        app.run()
        assert not app.exception, app.exception
        assert app.markdown[-1].value == want


def test_the_code_for_these_settings_follows_the_widgets():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    fastai, outline = (c.value for c in at.code if "import" in c.value)
    ast.parse(fastai)
    ast.parse(outline)
    assert "learn.fit_one_cycle(10, lr_max=0.01)" in fastai and "Resize(16)" in fastai
    at.number_input(key=state.T_EPOCHS).set_value(4)
    at.radio(key=state.T_METHOD).set_value("fine_tune").run()
    fastai, outline = (c.value for c in at.code if "import" in c.value)
    assert "learn.fine_tune(4, base_lr=0.01, freeze_epochs=1)" in fastai
    assert "train(model, opt, sched, 4)" in outline
    assert any(e.label == "The code for these settings" for e in at.expander)


def test_a_link_sets_lo():
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.query_params["method"] = "unfreeze"
    app.query_params["lo"] = "3e-06"
    app.run()
    assert app.number_input(key=state.T_LR_LO).value == pytest.approx(3e-6)
    bad = AppTest.from_file(PAGE, default_timeout=120)
    bad.query_params["lo"] = "5"
    bad.run()
    assert any("“lo” was ignored" in w.value for w in bad.warning)
