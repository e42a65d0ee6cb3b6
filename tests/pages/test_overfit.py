"""AppTest for the Fit and overfit page: every control, the link that carries them, the verdicts."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import state

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "overfit.py")
APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def at():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    return app


def query(at) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}


def messages(at):
    return " ".join(m.value for m in list(at.success) + list(at.warning) + list(at.error))


def test_defaults_draw_both_charts_and_a_good_fit(at):
    assert at.slider(key=state.O_DEGREE).value == 3 and at.select_slider(key=state.O_WD).value == 0
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("The points and the fitted curve" in s for s in charts)
    assert any("Loss against the degree" in s for s in charts)
    assert "A good fit" in messages(at)
    assert query(at)["deg"] == "3" and query(at)["wd"] == "0"


def test_degree_fifteen_overfits_and_weight_decay_tames_it(at):
    at.slider(key=state.O_DEGREE).set_value(15).run()
    assert "Overfitting" in messages(at)
    wild = float(at.metric[1].value)
    at.select_slider(key=state.O_WD).set_value(1e-4).run()
    assert "A good fit" in messages(at)
    assert float(at.metric[1].value) < wild / 10
    at.slider(key=state.O_DEGREE).set_value(1).run()
    assert "Underfitting" in messages(at)


def test_every_control_is_in_the_url(at):
    at.selectbox(key=state.O_CURVE).set_value("cubic")
    at.slider(key=state.O_N).set_value(60)
    at.slider(key=state.O_NOISE).set_value(0.5)
    at.slider(key=state.O_VALID).set_value(0.4)
    at.number_input(key=state.O_SEED).set_value(7)
    at.slider(key=state.O_DEGREE).set_value(9)
    at.select_slider(key=state.O_WD).set_value(1e-3)
    at.toggle(key=state.O_TRUTH).set_value(False)
    at.toggle(key=state.O_LOGY).set_value(False)
    at.run()
    assert query(at) == {"curve": "cubic", "n": "60", "noise": "0.5", "held": "0.4", "seed": "7",
                     "deg": "9", "wd": "0.001", "truth": "0", "logy": "0"}
    assert any("curve=cubic&n=60&noise=0.5&held=0.4&seed=7&deg=9&wd=0.001&truth=0&logy=0"
               in c.value for c in at.code)


def test_a_link_reproduces_the_view_and_a_bad_value_is_announced():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params.update({"deg": "12", "wd": "0.01", "seed": "3", "n": "500", "curve": "cubic"})
    app.run()
    assert not app.exception
    assert app.slider(key=state.O_DEGREE).value == 12
    assert app.select_slider(key=state.O_WD).value == 0.01
    assert app.number_input(key=state.O_SEED).value == 3
    assert app.selectbox(key=state.O_CURVE).value == "cubic"
    assert any("“n” was ignored" in w.value for w in app.warning)
    assert app.slider(key=state.O_N).value == 30


def test_the_home_page_lists_fit_and_overfit():
    home = AppTest.from_file(APP, default_timeout=60).run()
    assert not home.exception
    assert any("Fit and overfit" in el.proto.label for el in home.get("page_link"))
