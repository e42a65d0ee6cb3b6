"""AppTest for the Train page on a tiny data set: data step, LR finder, training, coach, runs.

AppTest does not run a fragment's timer, so each test reruns the whole script while the job works
(a full run draws the fragments too) until the page has taken in the job's result.
"""
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
    """Own data directory, with a tiny two-class set in folders/ (the 'folder on the server')."""
    root = tmp_path_factory.mktemp("appdata")
    old = os.environ.get("DLLAB_DATA")
    os.environ["DLLAB_DATA"] = str(root)
    rng = np.random.default_rng(0)
    for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        d = root / "folders" / "tiny" / cls
        d.mkdir(parents=True)
        for i in range(16):
            img = np.clip(np.array(colour) + rng.normal(0, 25, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i}.png")
    (root / "folders" / "tiny" / "red" / "broken.png").write_bytes(b"<html>not an image</html>")
    yield root
    if old is None:
        os.environ.pop("DLLAB_DATA", None)
    else:
        os.environ["DLLAB_DATA"] = old


def wait_until(at: AppTest, done, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return
        time.sleep(0.3)
    raise AssertionError("the job did not finish in time")


@pytest.fixture
def at():
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    assert not app.exception, app.exception
    return app


def use_tiny(at: AppTest) -> None:
    at.radio(key=state.T_SOURCE).set_value("folder").run()
    at.selectbox(key=state.T_ARCH).set_value("simple_cnn")
    at.checkbox(key=state.T_PRETRAINED).uncheck()
    at.selectbox(key=state.T_SIZE).set_value(16)
    at.selectbox(key=state.T_BS).set_value(8)
    at.radio(key=state.T_METHOD).set_value("fit_one_cycle")
    at.run()
    assert not at.exception and not at.error


def test_digits_are_the_default_and_ready(at):
    assert at.radio(key=state.T_SOURCE).value == "digits"
    assert at.selectbox(key=state.T_ARCH).value == "simple_cnn" and at.selectbox(key=state.T_SIZE).value == 16
    assert any("Images per class" in str(c.proto.spec) for c in at.get("plotly_chart"))
    assert len(at.get("imgs")) >= 1 or at.get("image")
    assert not at.error


def test_data_step_verify_and_quarantine_is_read_only_for_server_folders(at):
    use_tiny(at)
    at.button(key="train.verify_btn").click().run()
    assert any("1 files cannot be used" in w.value for w in at.warning)
    assert any("read-only" in c.value for c in at.caption)
    at.toggle(key=state.T_AUGMENT).set_value(False).run()
    assert not at.exception


def test_lr_finder_train_coach_and_runs(at):
    use_tiny(at)
    at.button(key="train.lr_find_btn").click().run()
    assert at.session_state[state.T_JOB]
    wait_until(at, lambda a: state.T_LR_FIND in a.session_state)
    res = at.session_state[state.T_LR_FIND]
    assert len(res["lrs"]) > 10 and "valley" in res["suggestions"]
    valley = res["suggestions"]["valley"]
    # the finder's valley becomes the rate used next; a suggestion button sets its value
    assert at.number_input(key=state.T_LR).value == pytest.approx(float(f"{valley:.2e}"))
    steep = res["suggestions"]["steep"]
    at.button(key="train.use_steep").click().run()
    assert at.number_input(key=state.T_LR).value == pytest.approx(float(f"{steep:.2e}"))

    at.number_input(key=state.T_EPOCHS).set_value(2)
    at.number_input(key=state.T_LR).set_value(1e-2).run()
    at.button(key="train.start").click().run()
    wait_until(at, lambda a: (a.session_state[state.T_LAST_RESULT] or {}).get("kind") == "train"
               if state.T_LAST_RESULT in a.session_state else False)
    last = at.session_state[state.T_LAST_RESULT]
    assert len(last["epochs"]) == 2 and last["run_id"]
    assert any(h.value == "5 · Coach" for h in at.subheader)
    notes = [m.value for m in list(at.success) + list(at.warning) + list(at.error) + list(at.info)]
    assert any(n.startswith("**") for n in notes)        # at least one coach note
    frames = [d.value for d in at.dataframe]
    assert any(list(f.columns)[:5] == ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
               for f in frames)
    assert any("explore?run=" + last["run_id"] in c.value for c in at.code)
    assert not at.error


def test_unfreeze_without_a_run_is_a_sentence(at):
    use_tiny(at)
    at.radio(key=state.T_METHOD).set_value("unfreeze").run()
    at.button(key="train.start").click().run()
    assert any("train first" in e.value for e in at.error)
    assert not at.exception


def test_retrain_from_the_explorer_takes_its_data_and_settings(data_root):
    app = AppTest.from_file(PAGE, default_timeout=120)
    folder = data_root / "folders" / "tiny"
    app.session_state[state.E_RETRAIN] = {"arch": "simple_cnn", "pretrained": False, "size": 32,
                                      "bs": 8, "valid_pct": 0.25, "seed": 7, "epochs": 3,
                                      "lr": 3e-3, "method": "fit_one_cycle", "data": "tiny",
                                      "data_folder": str(folder), "from_run": "x" * 22}
    app.run()
    assert not app.exception, app.exception
    assert app.radio(key=state.T_SOURCE).value == "cleaned"
    assert app.session_state[state.T_DATASET]["folder"] == str(folder)
    assert app.session_state[state.T_SIZE] == 32 and app.session_state[state.T_SEED] == 7
    assert app.session_state[state.T_EPOCHS] == 3
    assert state.E_RETRAIN not in app.session_state        # taken over once, not on every rerun
    app.radio(key=state.T_SOURCE).set_value("digits").run()
    assert "digits" in app.session_state[state.T_DATASET]["folder"]


# ------------------------------------------------------------------------------ precompute

PRECOMPUTE = "Precompute body features (precompute=True)"


def use_tiny_pretrained(at: AppTest, augment: bool) -> None:
    """The tiny set with EfficientNet-Lite0's bundled ImageNet weights (offline), 32 px."""
    at.radio(key=state.T_SOURCE).set_value("folder").run()
    at.selectbox(key=state.T_ARCH).set_value("efficientnet_lite0").run()
    at.checkbox(key=state.T_PRETRAINED).check()
    at.selectbox(key=state.T_SIZE).set_value(32)
    at.selectbox(key=state.T_BS).set_value(8)
    at.radio(key=state.T_METHOD).set_value("fit_one_cycle")
    at.toggle(key=state.T_AUGMENT).set_value(augment)
    at.run()
    assert not at.exception and not at.error


def greyed_precompute(at: AppTest) -> str:
    """Asserts the checkbox is drawn greyed and unticked; returns the captions (the reason)."""
    assert state.T_PRECOMPUTE not in [c.key for c in at.checkbox]
    box = at.checkbox(key="train.precompute_off")
    assert box.label == PRECOMPUTE and box.disabled and box.value is False
    return " ".join(c.value for c in at.caption)


def test_precompute_is_greyed_while_augmentation_is_on(at):
    use_tiny_pretrained(at, augment=True)
    assert "Precompute needs augmentation off" in greyed_precompute(at)


def test_precompute_is_greyed_for_a_model_without_a_pretrained_body(at):
    use_tiny(at)
    at.toggle(key=state.T_AUGMENT).set_value(False).run()
    assert "simple_cnn has no pretrained body" in greyed_precompute(at)


def test_precompute_is_greyed_for_unfreeze(at):
    use_tiny_pretrained(at, augment=False)
    at.radio(key=state.T_METHOD).set_value("unfreeze").run()
    assert "Unfreezing trains every layer" in greyed_precompute(at)


def test_precompute_offered_for_a_frozen_pretrained_body_and_used_by_the_run(at):
    from engine.runs import load_run

    use_tiny_pretrained(at, augment=False)
    box = at.checkbox(key=state.T_PRECOMPUTE)
    assert box.label == PRECOMPUTE and not box.disabled and box.value is False
    assert "train.precompute_off" not in [c.key for c in at.checkbox]
    box.check().run()
    # Augmentation back on greys it; off again, the learner's tick is still there.
    at.toggle(key=state.T_AUGMENT).set_value(True).run()
    greyed_precompute(at)
    at.toggle(key=state.T_AUGMENT).set_value(False).run()
    assert at.checkbox(key=state.T_PRECOMPUTE).value is True

    at.number_input(key=state.T_EPOCHS).set_value(1)
    at.number_input(key=state.T_LR).set_value(1e-2).run()
    at.button(key="train.start").click().run()
    wait_until(at, lambda a: (a.session_state[state.T_LAST_RESULT] or {}).get("kind") == "train"
               if state.T_LAST_RESULT in a.session_state else False)
    last = at.session_state[state.T_LAST_RESULT]
    assert last["precompute"]["used"] is True and len(last["epochs"]) == 1
    run = load_run(last["run_id"])
    assert run.settings["precompute"] is True and run.settings["augment"] is False
    assert any("precomputed body features" in c.value for c in at.caption)
    assert not at.error


# ------------------------------------------------------------------------------ schedule preview


def schedule_preview(at: AppTest) -> np.ndarray:
    """The preview chart's learning rates, (steps, groups), earliest layers first."""
    import json
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "Learning-rate schedule" in c.proto.spec)
    return np.array([t["y"] for t in spec["data"] if t["name"].startswith("lr ")], float).T


def test_schedule_preview_is_what_the_optimizer_saw(at, monkeypatch):
    """fine_tune (a frozen epoch, then two with slice(lr/200, lr/2)): the page's preview, drawn
    from engine.schedule.plan_run, equals every rate the optimiser's groups were given."""
    from engine.training import Learner

    seen: list[list[float]] = []
    set_hypers = Learner._set_hypers

    def recording(self, lrs, mom=None):
        set_hypers(self, lrs, mom)
        by_group = {g["layer_group"]: g["lr"] for g in self.opt.param_groups}
        seen.append([by_group[i] for i in sorted(by_group)])

    monkeypatch.setattr(Learner, "_set_hypers", recording)
    use_tiny(at)
    at.radio(key=state.T_METHOD).set_value("fine_tune").run()
    at.number_input(key=state.T_FREEZE_EPOCHS).set_value(1)
    at.number_input(key=state.T_EPOCHS).set_value(2)
    at.number_input(key=state.T_LR).set_value(3e-3).run()
    preview = schedule_preview(at)
    assert preview.shape[1] == 3                              # early layers, late layers, head
    at.button(key="train.start").click().run()
    wait_until(at, lambda a: (a.session_state[state.T_LAST_RESULT] or {}).get("kind") == "train"
               if state.T_LAST_RESULT in a.session_state else False)
    last = at.session_state[state.T_LAST_RESULT]
    assert len(last["epochs"]) == 3 and not last["cancelled"]
    seen_lrs = np.array(seen)
    assert seen_lrs.shape == preview.shape, (seen_lrs.shape, preview.shape)
    assert np.abs(seen_lrs - preview).max() <= 1e-12
    # The batch events report the head group's rate: the preview's last column.
    head = np.array([b["lr"] for b in last["batches"]])
    assert np.abs(head - preview[:, -1]).max() <= 1e-12
    # The rate in the widget drives it: the frozen epoch's one cycle starts the head at lr/25.
    assert preview[0, -1] == pytest.approx(3e-3 / 25, rel=1e-12)


def test_every_way_of_setting_the_learning_rate_rounds_it_once(at):
    """The widget, the link and the optimiser see one number, rounded to what %.2e shows."""
    at.number_input(key=state.T_LR).set_value(0.00123456).run()
    assert at.session_state[state.T_LR] == 0.00123
    assert at.query_params["lr"] == "0.00123"
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.query_params["lr"] = "0.000456789"
    app.run()
    assert not app.exception, app.exception
    assert app.number_input(key=state.T_LR).value == 0.000457
