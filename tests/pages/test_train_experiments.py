"""AppTest for issue 16 on the Train page: weight decay and head dropout (widgets, link, the run's
settings), a validation share up to 0.9, an experiment in one click with the coach's verdict, and
runs side by side."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from ui import state

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "train.py")


@pytest.fixture(scope="module", autouse=True)
def data_root(tmp_path_factory):
    """Own data directory with a tiny two-class set in folders/ (the 'folder on the server')."""
    root = tmp_path_factory.mktemp("appdata16")
    old = os.environ.get("DLLAB_DATA")
    os.environ["DLLAB_DATA"] = str(root)
    rng = np.random.default_rng(0)
    for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        d = root / "folders" / "tiny" / cls
        d.mkdir(parents=True)
        for i in range(16):
            img = np.clip(np.array(colour) + rng.normal(0, 25, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i}.png")
    yield root
    if old is None:
        os.environ.pop("DLLAB_DATA", None)
    else:
        os.environ["DLLAB_DATA"] = old


def wait_for_run(at: AppTest, previous: str | None, timeout: float = 120) -> dict:
    """Rerun until the page took in a finished training run other than `previous`."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        at.run()
        assert not at.exception, at.exception
        last = at.session_state[state.T_LAST_RESULT] if state.T_LAST_RESULT in at.session_state \
            else None
        if last and last.get("kind") == "train" and last.get("run_id") and \
                last["run_id"] != previous:
            return last
        time.sleep(0.3)
    raise AssertionError("the run did not finish in time")


def use_tiny(at: AppTest) -> None:
    at.radio(key=state.T_SOURCE).set_value("folder").run()
    at.selectbox(key=state.T_ARCH).set_value("simple_cnn")
    at.selectbox(key=state.T_SIZE).set_value(16)
    at.selectbox(key=state.T_BS).set_value(8)
    at.radio(key=state.T_METHOD).set_value("fit_one_cycle")
    at.number_input(key=state.T_EPOCHS).set_value(2)
    at.number_input(key=state.T_LR).set_value(1e-2)
    at.run()
    assert not at.exception and not at.error


def query(at) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}


def test_regularisation_widgets_default_to_fastai_and_live_in_the_link():
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert at.number_input(key=state.T_WD).value == pytest.approx(0.01)
    assert at.slider(key=state.T_PS).value == pytest.approx(0.5)
    assert query(at)["wd"] == "0.01" and query(at)["ps"] == "0.5"
    at.number_input(key=state.T_WD).set_value(0.1)
    at.slider(key=state.T_PS).set_value(0.25)
    at.slider(key=state.T_VALID_PCT).set_value(0.9)
    at.run()
    assert (query(at)["wd"], query(at)["ps"], query(at)["vp"]) == ("0.1", "0.25", "0.9")


def test_a_link_sets_wd_ps_and_a_large_validation_share():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update({"wd": "0", "ps": "0.2", "vp": "0.9"})
    at.run()
    assert not at.exception and not at.warning
    assert at.number_input(key=state.T_WD).value == 0
    assert at.slider(key=state.T_PS).value == pytest.approx(0.2)
    assert at.slider(key=state.T_VALID_PCT).value == pytest.approx(0.9)
    bad = AppTest.from_file(PAGE, default_timeout=120)
    bad.query_params.update({"ps": "1", "wd": "-1"})
    bad.run()
    assert sum("was ignored" in w.value for w in bad.warning) == 2


def test_an_experiment_in_one_click_then_runs_side_by_side(data_root):
    from engine.runs import load_run

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    use_tiny(at)
    at.number_input(key=state.T_WD).set_value(0.05)
    at.slider(key=state.T_PS).set_value(0.3).run()
    assert all(at.button(key=state.T_EXPERIMENT.format(n)) for n in
               ("lr_too_high", "lr_too_low", "too_few_epochs", "too_many_epochs"))
    assert any("Sets `lr=1e-05`" in c.value for c in at.caption)
    at.button(key="train.start").click().run()
    first = wait_for_run(at, None)
    saved = load_run(first["run_id"]).settings
    assert (saved["wd"], saved["ps"], saved["lr"]) == (0.05, 0.3, 0.01)
    assert any("Train at least two runs" in c.value for c in at.caption)   # one run so far

    at.button(key=state.T_EXPERIMENT.format("lr_too_low")).click().run()
    second = wait_for_run(at, first["run_id"])
    saved = load_run(second["run_id"]).settings
    # The experiment's override on top of the page's settings; the widgets stay as they were.
    assert (saved["lr"], saved["wd"], saved["ps"], saved["epochs"]) == (1e-5, 0.05, 0.3, 2)
    assert at.number_input(key=state.T_LR).value == pytest.approx(0.01)
    assert second["settings"]["lr"] == 1e-5 and second["fit"]["n"] > 0
    assert any(h.value == "5 · Coach" for h in at.subheader)
    captions = " ".join(c.value for c in at.caption)
    assert "Experiment **Learning rate too low** (lr_too_low). Expected:" in captions
    assert "The coach's finding: **" in captions

    # Runs side by side: the two newest, their curves, and the one setting that differs.
    assert any(h.value == "7 · Runs side by side" for h in at.subheader)
    assert sorted(at.multiselect(key=state.T_COMPARE).value) == sorted([first["run_id"],
                                                                        second["run_id"]])
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Loss per epoch (train solid, valid dashed)" in s for s in specs)
    assert any("Error rate per epoch (validation)" in s for s in specs)
    table = next(d.value for d in at.table if "final error rate" in list(d.value.index))
    assert list(table.index) == ["final error rate", "lr"]
    assert set(table.loc["lr"]) == {"0.01", "1e-05"}
    at.multiselect(key=state.T_COMPARE).unselect(second["run_id"]).run()
    assert any("Pick at least 2 runs" in m.value for m in at.info)
