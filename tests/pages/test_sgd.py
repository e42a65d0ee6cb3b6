"""AppTest for the SGD page: presets set the controls, a diverging preset says so, bad input is a
sentence, and a link's query string sets every control."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import sgd

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "sgd.py")


def _texts(at, kind: str) -> str:
    return " ".join(e.value for e in getattr(at, kind))


@pytest.fixture
def at():
    app = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not app.exception, app.exception
    return app


def test_default_page_is_the_lessons_run(at):
    assert at.select_slider(key="sgd.lr").value == 0.1
    assert at.slider(key="sgd.steps").value == 100
    assert at.select_slider(key="sgd.batch").value == 0
    assert at.radio(key="sgd.optimizer").value == "sgd"
    assert not at.error
    assert "Critical learning rate for these points" in _texts(at, "markdown")
    assert "diverged" not in _texts(at, "warning") + _texts(at, "error")
    metrics = {m.label: m.value for m in at.metric}
    x, y = sgd.make_line_data()
    res = sgd.fit(x, y, lr=0.1, steps=100)
    assert metrics["loss at the end"] == f"{res.final_loss:.4g}"


@pytest.mark.parametrize("preset", ["too high", "way too high"])
def test_diverging_presets_set_lr_above_critical_and_say_so(at, preset):
    at.select_slider(key="sgd.batch").set_value(10).run()
    at.radio(key="sgd.optimizer").set_value("adam").run()
    at.button(key=f"sgd.preset.{preset.replace(' ', '_')}").click().run()
    assert not at.exception
    x, _ = sgd.make_line_data()
    crit = sgd.critical_lr(x)
    lr = at.select_slider(key="sgd.lr").value
    assert at.radio(key="sgd.optimizer").value == "sgd"
    assert at.select_slider(key="sgd.batch").value == 0
    if preset == "too high":
        assert 1.0 * crit < lr < 1.15 * crit
    else:
        assert lr > 2.5 * crit
    assert "above the critical" in _texts(at, "warning")
    res = sgd.fit(*sgd.make_line_data(), lr=lr, steps=100)
    assert f"diverged at step {res.diverged_at}" in _texts(at, "error")


def test_too_low_and_lesson_presets(at):
    at.slider(key="sgd.steps").set_value(500).run()
    at.number_input(key="sgd.seed").set_value(7).run()
    at.button(key="sgd.preset.too_low").click().run()
    assert at.select_slider(key="sgd.lr").value == 0.001
    assert at.slider(key="sgd.steps").value == 100
    assert at.number_input(key="sgd.seed").value == 7          # the data stays
    assert not at.error and "above the critical" not in _texts(at, "warning")
    at.button(key="sgd.preset.lesson").click().run()
    assert at.select_slider(key="sgd.lr").value == 0.1
    assert at.number_input(key="sgd.seed").value == 42
    assert (at.number_input(key="sgd.a1").value, at.number_input(key="sgd.a2").value) == (-1.0, 1.0)


def test_bad_compare_text_is_a_sentence_not_a_traceback(at):
    at.text_input(key="sgd.compare").set_value("0.1, fast").run()
    assert not at.exception
    assert "“fast” is not a number" in _texts(at, "error")
    at.text_input(key="sgd.compare").set_value("0.1").run()
    assert "two to four learning rates" in _texts(at, "error")
    at.text_input(key="sgd.compare").set_value("0.1, 50").run()
    assert "outside" in _texts(at, "error")


def test_minibatch_and_optimizers_run(at):
    for opt in ("momentum", "adam"):
        at.radio(key="sgd.optimizer").set_value(opt).run()
        assert not at.exception and not at.error
    at.select_slider(key="sgd.batch").set_value(5).run()
    assert not at.exception and not at.error
    assert "epochs" in _texts(at, "caption")


def test_query_string_sets_every_control():
    app = AppTest.from_file(PAGE, default_timeout=120)
    query = {"lr": "0.5", "steps": "40", "bs": "20", "opt": "momentum", "noise": "0.5",
             "n": "200", "seed": "3", "a1": "2", "a2": "-3", "logy": "0", "lines": "1",
             "cmp": "0.1, 0.2"}
    for k, v in query.items():
        app.query_params[k] = v
    app.run()
    assert not app.exception
    assert app.select_slider(key="sgd.lr").value == 0.501       # the slider's nearest stop
    assert app.slider(key="sgd.steps").value == 40
    assert app.select_slider(key="sgd.batch").value == 20
    assert app.radio(key="sgd.optimizer").value == "momentum"
    assert app.number_input(key="sgd.n").value == 200
    assert app.number_input(key="sgd.seed").value == 3
    assert (app.number_input(key="sgd.a1").value, app.number_input(key="sgd.a2").value) == (2.0, -3.0)
    assert app.toggle(key="sgd.logy").value is False and app.toggle(key="sgd.line_by_line").value
    assert app.text_input(key="sgd.compare").value == "0.1, 0.2"
    share = " ".join(c.value for c in app.code)
    assert "lr=0.501" in share and "opt=momentum" in share and "seed=3" in share


def test_bad_link_values_are_reported_and_ignored():
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.query_params["lr"] = "banana"
    app.query_params["opt"] = "rmsprop"
    app.run()
    assert not app.exception
    warnings = _texts(app, "warning")
    assert "“lr” was ignored" in warnings and "“opt” was ignored" in warnings
    assert app.select_slider(key="sgd.lr").value == 0.1


def test_the_slider_offers_exactly_the_rates_the_comparison_accepts():
    from ui.sgd_controls import LR_GRID

    assert (LR_GRID[0], LR_GRID[-1]) == sgd.LR_RANGE
    assert sgd.parse_learning_rates(f"{LR_GRID[0]}, {LR_GRID[-1]}") == list(sgd.LR_RANGE)
