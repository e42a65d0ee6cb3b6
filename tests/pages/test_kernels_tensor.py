"""AppTest for the Kernel Playground's additions: the photo as numbers (shape, dtype, rank, min/max,
a crop's raw numbers per channel) and sigmoid beside ReLU in the Layers tab."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.samples import load_sample
from ui import state

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "kernels.py")


@pytest.fixture
def at():
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception
    return app


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def crop_numbers(at: AppTest, channel: str) -> np.ndarray:
    chart = next(c for c in at.get("plotly_chart")
                 if c.proto.id.endswith(state.K_TENSOR_FIG.format(channel)))
    return np.array(json.loads(chart.proto.spec)["data"][0]["z"])


def test_the_photo_is_shown_as_a_rank_3_uint8_tensor(at):
    photo = load_sample("chelsea")
    h, w = photo.shape[:2]
    assert metric(at, "shape") == f"({h}, {w}, 3)"
    assert metric(at, "dtype") == "uint8" and metric(at, "rank (ndim)") == "3"
    assert metric(at, "min … max") == f"{photo.min()} … {photo.max()}"
    said = " ".join(i.value for i in at.info)
    assert f"{w}×{h}" in said and f"({h}, {w}, 3)" in said and "width × height" in said
    assert any("rank 2" in c.value for c in at.caption)   # the grey working copy


def test_the_crop_shows_each_channels_raw_numbers_at_the_walkthrough_pixel(at):
    at.number_input(key=state.K_PX).set_value(10)
    at.number_input(key=state.K_PY).set_value(20)
    at.select_slider(key=state.K_CROP).set_value(5).run()
    assert not at.exception and not at.error
    photo = load_sample("chelsea")
    from engine.images import resize_to_fit
    work = resize_to_fit(photo, 1024)       # the working size, in colour
    for i, name in enumerate(("red", "green", "blue")):
        np.testing.assert_array_equal(crop_numbers(at, name), work[20:25, 10:15, i])
    assert at.query_params["crop"] == "5"


def test_sigmoid_beside_relu_in_the_layers(at):
    at.radio(key=state.K_LAYERS).set_value(2).run()
    assert any("ReLU beside sigmoid" in m.value for m in at.markdown)
    assert at.toggle(key=state.K_LAYER_RELU.format(1)).label == "ReLU after layer 1"
    at.radio(key=state.K_ACT).set_value("sigmoid").run()
    assert not at.exception and not at.error
    assert at.toggle(key=state.K_LAYER_RELU.format(1)).label == "sigmoid after layer 1"
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert any(c.startswith("after layer 1 + sigmoid") for c in captions)
    assert at.query_params["act"] == "sigmoid"
    at.toggle(key=state.K_LAYER_RELU.format(1)).set_value(False).run()
    assert any("one linear layer" in i.value for i in at.info)   # no non-linearity: collapses


def test_a_link_sets_sigmoid_and_the_crop_and_refuses_others():
    app = AppTest.from_file(PAGE, default_timeout=60)
    for k, v in {"act": "sigmoid", "crop": "8", "layers": "2"}.items():
        app.query_params[k] = v
    app.run()
    assert app.radio(key=state.K_ACT).value == "sigmoid"
    assert app.select_slider(key=state.K_CROP).value == 8
    bad = AppTest.from_file(PAGE, default_timeout=60)
    bad.query_params["act"] = "tanh"
    bad.query_params["crop"] = "7"
    bad.run()
    warnings = " ".join(w.value for w in bad.warning)
    assert "“act” was ignored" in warnings and "“crop” was ignored" in warnings
