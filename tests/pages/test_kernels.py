"""AppTest for the Kernel Playground: presets, the grid, bad cells, URL state."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import state

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "kernels.py")


def output_url(at: AppTest) -> str:
    """The media URL of the output picture (it changes when the pixels change)."""
    imgs = at.get("image")
    captions = [(el.proto.imgs[0].caption, el.proto.imgs[0].url) for el in imgs]
    return next(url for cap, url in captions if cap.startswith("output"))


def cells(at: AppTest) -> list[str]:
    return [at.text_input(key=state.K_CELL.format(i)).value for i in range(9)]


@pytest.fixture
def at():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception
    return app


def test_default_view_shows_top_sobel_on_chelsea(at):
    assert at.selectbox(key=state.K_PRESET).value == "top sobel"
    assert cells(at) == ["1", "2", "1", "0", "0", "0", "-1", "-2", "-1"]
    assert not at.error


def test_choosing_a_preset_fills_the_grid_and_changes_the_output(at):
    before = output_url(at)
    at.selectbox(key=state.K_PRESET).select("blur").run()
    assert not at.exception
    assert cells(at) == ["1/16", "2/16", "1/16", "2/16", "4/16", "2/16", "1/16", "2/16", "1/16"]
    assert output_url(at) != before


def test_editing_a_cell_turns_the_preset_custom_and_changes_output(at):
    before = output_url(at)
    at.text_input(key=state.K_CELL.format(4)).input("3").run()
    assert at.selectbox(key=state.K_PRESET).value == "custom"
    assert output_url(at) != before


@pytest.mark.parametrize("bad", ["", "abc", "nan", "inf", "1/0"])
def test_invalid_cell_shows_error_and_keeps_last_output(at, bad):
    before = output_url(at)
    at.text_input(key=state.K_CELL.format(0)).input(bad).run()
    assert not at.exception
    assert at.error and "last valid kernel" in at.error[0].value
    assert "Row 1, column 1" in at.error[0].value
    assert output_url(at) == before
    at.text_input(key=state.K_CELL.format(0)).input("5").run()   # fixing the cell recovers
    assert not at.error and output_url(at) != before


def test_display_relu_border_grey_options_change_output(at):
    urls = {output_url(at)}
    at.toggle(key=state.K_RELU).set_value(True).run()      # diverging: the blue half turns white
    urls.add(output_url(at))
    at.selectbox(key=state.K_DISPLAY).select("clip").run()
    urls.add(output_url(at))
    at.toggle(key=state.K_GREY).set_value(False).run()
    urls.add(output_url(at))
    at.radio(key=state.K_BORDER).set_value("replicate").run()
    urls.add(output_url(at))
    assert len(urls) == 5 and not at.exception


def test_walkthrough_sum_matches_output_value(at):
    at.number_input(key=state.K_PX).set_value(100).run()
    at.number_input(key=state.K_PY).set_value(80).run()
    text = " ".join(m.value for m in at.markdown)
    caption = " ".join(c.value for c in at.caption)
    total = text.split("= **")[1].split("**")[0]
    assert f"holds {total} at (x=100, y=80)" in caption


def test_url_state_reproduces_a_view():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params.update({"preset": "custom", "k": "0,1/2,0,0,0,0,0,-1/2,0", "sample": "camera",
                             "display": "abs", "relu": "1", "border": "reflect", "x": "10", "y": "12",
                             "hidden": "emboss"})
    app.run()
    assert not app.exception
    assert cells(app) == ["0", "1/2", "0", "0", "0", "0", "0", "-1/2", "0"]
    assert app.selectbox(key=state.K_SAMPLE).value == "camera"
    assert app.selectbox(key=state.K_DISPLAY).value == "abs"
    assert app.toggle(key=state.K_RELU).value is True
    assert app.radio(key=state.K_BORDER).value == "reflect"
    assert app.number_input(key=state.K_PX).value == 10 and app.number_input(key=state.K_PY).value == 12
    assert app.selectbox(key=state.K_HIDDEN).value == "emboss"


def test_bad_url_values_are_ignored_with_a_warning():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params.update({"preset": "<script>", "border": "wrap", "k": "1,2"})
    app.run()
    assert not app.exception
    assert app.selectbox(key=state.K_PRESET).value == "top sobel"
    assert len(app.warning) == 3


def test_learning_runs_on_request_and_reports_convergence(at):
    at.selectbox(key=state.K_HIDDEN).select("right sobel").run()
    assert any("Press" in i.value for i in at.info)
    at.button(key="kernels.learn_go").click().run()
    assert not at.exception
    assert at.success and "loss fell" in at.success[0].value
    error = float(at.success[0].value.split("largest weight error is ")[1].split(";")[0].split(" ")[0].rstrip("."))
    assert error < 0.01  # momentum (the default) recovers the hidden weights within 200 steps


def test_too_large_learning_rate_reports_divergence(at):
    at.radio(key=state.K_LEARN_RULE).set_value("plain").run()
    at.select_slider(key=state.K_LEARN_LR).set_value(2.2).run()
    at.button(key="kernels.learn_go").click().run()
    assert at.error and "Diverged at step" in at.error[0].value


# Issue 18, defect 1: a link (or a typed cell) whose number would take unbounded work to read.
HOSTILE_LINK_CELLS = [("1e999999999/3", "power of ten"), ("-1E+999999999", "power of ten"),
                      ("3/1e999999999", "power of ten"), ("9" * 41, "too long"),
                      ("1" + "0" * 500, "too long"), ("10**999999999", "not a number")]


def _default_output() -> str:
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    return output_url(app)


@pytest.mark.parametrize("cell,words", HOSTILE_LINK_CELLS, ids=lambda v: str(v)[:16])
def test_a_link_with_a_hostile_cell_is_a_sentence_and_keeps_the_last_kernel(cell, words):
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params.update({"preset": "custom", "k": ",".join([cell] + ["0"] * 8)})
    app.run()
    assert not app.exception
    (error,) = [e.value for e in app.error]
    assert "Row 1, column 1" in error and words in error and "last valid kernel" in error
    assert len(error) < 400                                  # the cell is quoted short, if at all
    assert output_url(app) == _default_output()              # the default kernel stays applied


def test_a_link_value_over_the_length_cap_is_ignored_with_a_warning():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params.update({"k": ",".join(["9" * 5000] * 9), "x": "1" * 5000,
                             "llr": "1e999999999"})
    app.run()
    assert not app.exception and not app.error
    warnings = [w.value for w in app.warning]
    assert len(warnings) == 3 and any("longer than 1000 characters" in w for w in warnings)
    assert all(len(w) < 300 for w in warnings)
    assert cells(app) == ["1", "2", "1", "0", "0", "0", "-1", "-2", "-1"]


def test_typing_a_hostile_cell_keeps_the_last_kernel(at):
    before = output_url(at)
    at.text_input(key=state.K_CELL.format(4)).input("1e999999999/3").run()
    assert not at.exception
    assert "Row 2, column 2" in at.error[0].value and "power of ten" in at.error[0].value
    assert output_url(at) == before
