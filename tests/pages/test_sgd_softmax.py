"""AppTest for the SGD page's additions: the momentum β slider, the sentences on the intercept and
unseeded lesson data, and the softmax + cross-entropy box (checked against PyTorch)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch.nn import functional

from ui import state

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "sgd.py")


@pytest.fixture
def at():
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    assert not app.exception
    return app


def box_text(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("e^score"))


def test_beta_slider_only_with_momentum_and_it_moves_the_limit(at):
    assert not [s for s in at.slider if s.key == state.S_BETA]
    at.radio(key=state.S_OPTIMIZER).set_value("momentum").run()
    assert at.slider(key=state.S_BETA).value == pytest.approx(0.9)
    assert any("2·(1 + 0.9)" in c.value for c in [*at.caption, *at.warning])
    at.slider(key=state.S_BETA).set_value(0.5).run()
    assert not at.exception and not at.error
    assert any("momentum 0.5" in c.value and "2·(1 + 0.5)" in c.value for c in [*at.caption, *at.warning])
    assert at.query_params["beta"] == "0.5"


def test_the_intercept_and_unseeded_data_are_explained(at):
    text = " ".join(c.value for c in at.caption)
    assert "near 2.5" in text and "torch.rand" in text and "without a seed" in text


@pytest.mark.parametrize("scores,actual", [((2.0, 1.0, -1.0), 0), ((-3.0, 4.5, 0.2), 2),
                                           ((10.0, -10.0, 0.0), 1)])
def test_the_softmax_box_matches_torch(at, scores, actual):
    for i, z in enumerate(scores, start=1):
        at.slider(key=state.S_SCORE.format(i)).set_value(z)
    at.radio(key=state.S_ACTUAL).set_value(actual).run()
    assert not at.exception and not at.error
    text = box_text(at)
    probs = [float(p) for p in re.findall(r"\*\*\w+\*\* ([\d.]+)", text)]
    z = torch.tensor([scores], dtype=torch.float64)
    want = torch.softmax(z, 1)[0].tolist()
    assert probs == pytest.approx(want, abs=6e-4)
    loss = float(re.search(r"= \*\*([\d.]+)\*\*", text).group(1))
    assert loss == pytest.approx(functional.cross_entropy(z, torch.tensor([actual])).item(), abs=6e-5)
    assert at.query_params["actual"] == str(actual)
    assert at.query_params["z2"] == f"{scores[1]:.6g}"


def test_a_link_sets_beta_and_the_scores():
    app = AppTest.from_file(PAGE, default_timeout=120)
    for k, v in {"opt": "momentum", "beta": "0.75", "z1": "-1", "z2": "3", "z3": "0.5",
                 "actual": "1"}.items():
        app.query_params[k] = v
    app.run()
    assert app.slider(key=state.S_BETA).value == pytest.approx(0.75)
    assert [app.slider(key=state.S_SCORE.format(i)).value for i in (1, 2, 3)] == [-1.0, 3.0, 0.5]
    assert app.radio(key=state.S_ACTUAL).value == 1
    bad = AppTest.from_file(PAGE, default_timeout=120)
    bad.query_params["beta"] = "1.5"
    bad.query_params["actual"] = "3"
    bad.run()
    warnings = " ".join(w.value for w in bad.warning)
    assert "“beta” was ignored" in warnings and "“actual” was ignored" in warnings


def test_the_lesson_preset_keeps_the_softmax_box(at):
    at.slider(key=state.S_SCORE.format(1)).set_value(-4.0).run()
    at.button(key=state.S_PRESET.format("lesson")).click().run()
    assert at.slider(key=state.S_SCORE.format(1)).value == -4.0
