"""AppTest for the Explorer's Inside tab (learned kernels, feature maps, the enlarged map, the
playground link) and the Top-losses tiles' p(actual) and −ln p(actual)."""
from __future__ import annotations

import math
import re
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from engine import inside, interpret
from engine.runs import load_run
from tests.pages.test_explore import app, make_fake_run
from ui import state


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    data = tmp_path_factory.mktemp("dllab-inside")
    mp = pytest.MonkeyPatch()
    mp.setenv("DLLAB_DATA", str(data))
    run_id, _ = make_fake_run(data)
    yield run_id
    mp.undo()


@pytest.fixture
def run_id(stored):
    return stored


def link(at) -> dict[str, list[str]]:
    (button,) = at.get("link_button")
    url = button.proto.url
    assert urlsplit(url).path.endswith("/kernels")
    return parse_qs(urlsplit(url).query)


def shapes(at) -> list[str]:
    return [c.value for c in at.caption if "(C × H × W)" in c.value]


def enlarged_caption(at) -> str:
    return next(i.proto.imgs[0].caption for i in at.get("image") if "stretched to" in
                i.proto.imgs[0].caption)


def expected_cells(run_id: str, k: int) -> list[str]:
    ckpt = load_run(run_id).load_model()
    weights = inside.first_layer_kernels(ckpt.model)
    return inside.playground_cells(inside.centre3(inside.grey_kernel(weights[k], ckpt.meta["std"])))


def test_the_tab_shows_kernels_stages_and_a_playground_link(run_id):
    at = app()
    assert "Inside" in [t.label for t in at.tabs]
    query = link(at)
    assert query["preset"] == ["custom"] and query["grey"] == ["1"]
    assert query["k"][0].split(",") == expected_cells(run_id, 0)
    # simple_cnn: four conv blocks, each shape said as C × H × W
    assert shapes(at) == ["32 channels of 16×16 pixels (C × H × W)",
                          "64 channels of 8×8 pixels (C × H × W)",
                          "96 channels of 4×4 pixels (C × H × W)",
                          "128 channels of 2×2 pixels (C × H × W)"]
    assert any("32 × 16 × 16" in m.value for m in at.markdown)
    assert "3×3 centre" not in " ".join(m.value for m in at.markdown)   # 3×3 kernels: whole
    assert not at.error and not at.exception


def test_picking_a_kernel_changes_the_link_and_the_view_redraws(run_id):
    at = app()
    at.number_input(key=state.E_IN_KERNEL).set_value(5).run()
    assert link(at)["k"][0].split(",") == expected_cells(run_id, 5)
    at.radio(key=state.E_IN_KVIEW).set_value("channels").run()
    assert not at.exception and not at.error
    fig = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(state.E_IN_KERNEL_FIG))
    assert '"heatmap"' in fig.proto.spec and "kernel 31" in fig.proto.spec
    assert at.query_params["in_k"] == "5" and at.query_params["in_view"] == "channels"


def test_maps_per_stage_stage_channel_opacity_and_image(run_id):
    at = app()
    at.select_slider(key=state.E_IN_TOP).set_value(4).run()
    spec = next(c.proto.spec for c in at.get("plotly_chart")
                if c.proto.id.endswith(state.E_IN_FMAP_FIG.format(0)))
    assert len(re.findall(r'"channel \d+"', spec)) == 4
    at.selectbox(key=state.E_IN_STAGE).set_value(2).run()
    at.number_input(key=state.E_IN_CHANNEL).set_value(95).run()
    assert "channel 95 of “block 3" in enlarged_caption(at) and "4×4 pixels" in enlarged_caption(at)
    at.selectbox(key=state.E_IN_STAGE).set_value(0).run()   # 32 channels: 95 is clamped
    assert at.number_input(key=state.E_IN_CHANNEL).value == 31
    before = [i.proto.imgs[0].url for i in at.get("image")]
    at.slider(key=state.E_IN_ALPHA).set_value(0.2).run()
    assert [i.proto.imgs[0].url for i in at.get("image")] != before
    maps = at.session_state[state.E_IN_MAPS][2]
    at.number_input(key=state.E_IN_ITEM).set_value(3).run()
    assert not np.array_equal(at.session_state[state.E_IN_MAPS][2][0][1], maps[0][1])
    at.radio(key=state.E_IN_SOURCE).set_value("upload").run()
    assert not at.exception and not at.error and shapes(at) == []
    assert at.query_params["in_src"] == "upload" and at.query_params["in_alpha"] == "0.2"


def test_a_link_sets_every_inside_control(run_id):
    query = {"in_item": "2", "in_view": "channels", "in_k": "7", "in_top": "16", "in_stage": "1",
             "in_ch": "40", "in_alpha": "0.35"}
    at = app(query=query)
    assert at.number_input(key=state.E_IN_ITEM).value == 2
    assert at.radio(key=state.E_IN_KVIEW).value == "channels"
    assert at.number_input(key=state.E_IN_KERNEL).value == 7
    assert at.select_slider(key=state.E_IN_TOP).value == 16
    assert at.selectbox(key=state.E_IN_STAGE).value == 1
    assert at.number_input(key=state.E_IN_CHANNEL).value == 40
    assert at.slider(key=state.E_IN_ALPHA).value == pytest.approx(0.35)
    assert {k: at.query_params[k] for k in query} == query


def test_bad_inside_link_values_are_ignored_with_a_warning(run_id):
    at = app(query={"in_top": "5", "in_alpha": "2", "in_k": "200"})
    warnings = " ".join(w.value for w in at.warning)
    assert "“in_top” was ignored" in warnings and "“in_alpha” was ignored" in warnings
    assert at.select_slider(key=state.E_IN_TOP).value == 8
    assert at.number_input(key=state.E_IN_KERNEL).value == 31     # past the last kernel: clamped
    assert not at.exception


def test_top_loss_tiles_show_p_actual_and_its_minus_ln(run_id):
    at = app()
    at.slider(key=state.E_K).set_value(6).run()
    run = load_run(run_id)
    captions = [c.value for c in at.caption if c.value.startswith("p(actual)")]
    assert len(captions) == 6
    _, order = interpret.top_losses(run.losses, 6)
    for text, i in zip(captions, order):
        p_shown, p_again, loss = re.match(r"p\(actual\) = (\S+) → loss = −ln (\S+) = (\S+)",
                                          text).groups()
        assert p_shown == p_again
        p = run.probs[i, run.targets[i]]
        assert float(p_shown) == pytest.approx(p, rel=1e-3)
        assert float(loss) == pytest.approx(-math.log(p), abs=1e-3)
        assert float(loss) == pytest.approx(run.losses[i], abs=2e-3)   # the stored top loss


@pytest.mark.parametrize("arch,side", [("resnet18", 7), ("efficientnet_lite0", 3)])
def test_other_architectures_show_their_stem_and_stages(tmp_path, monkeypatch, arch, side):
    """A ResNet's 7×7 stem goes to the playground as its 3×3 centre, and says so; every stage of
    the architecture is listed with its shape."""
    from engine.data import DataConfig, build_dataloaders
    from engine.models import create_model
    from engine.runs import save_run
    from engine.training import Learner

    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    _, folder = make_fake_run(tmp_path, per_class=4)
    dls = build_dataloaders(folder, DataConfig(size=32, bs=4, flip=False, augment=False))
    learn = Learner(create_model(arch, 3, pretrained=False), dls, device="cpu", seed=0)
    info = save_run(learn, owner="owner-token-a", data_name="shapes", settings={"arch": arch, "size": 32},
                    history={"epochs": []}, status="done")
    at = app(query={"run": info.id})
    assert not at.error
    text = " ".join(m.value for m in at.markdown)
    assert f"of {side}×{side} weights" in text
    assert ("the **3×3 centre**" in text) == (side > 3)
    assert len(shapes(at)) == len(inside.STAGES[arch])
    cells = link(at)["k"][0].split(",")
    assert len(cells) == 9
