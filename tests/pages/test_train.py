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


# Issue 18 -------------------------------------------------------------------------------------


def _one_image_per_class(root: Path, name: str = "u-one-each") -> Path:
    """A set whose split holds out nothing: each class has a single image. Named to sort after
    "tiny", so the other tests' default folder stays the same."""
    for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        d = root / "folders" / name / cls
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), colour, np.uint8)).save(d / "only.png")
    return root / "folders" / name


def test_an_empty_validation_set_is_announced_before_training_and_not_diagnosed(at, data_root):
    """Defect 5: with one image per class the page says, before training, that the validation set
    is empty and what to do; after training the coach says the same instead of "learning rate too
    high" (which it used to read from the NaN validation loss)."""
    import shutil
    folder = _one_image_per_class(data_root)
    try:
        use_tiny(at)
        assert not any("validation set is empty" in w.value for w in at.warning)   # "tiny" is fine
        at.selectbox(key=state.T_FOLDER).set_value(folder.name).run()
        warnings = [w.value for w in at.warning if "validation set is empty" in w.value]
        assert len(warnings) == 1 and "at least two images" in warnings[0]
        assert any("0 validation images" in c.value for c in at.caption)
        at.number_input(key=state.T_EPOCHS).set_value(1).run()
        at.button(key="train.start").click().run()
        wait_until(at, lambda a: (a.session_state[state.T_LAST_RESULT] or {}).get("kind") == "train"
                   if state.T_LAST_RESULT in a.session_state else False)
        notes = [m.value for m in list(at.success) + list(at.warning) + list(at.error)
                 + list(at.info)]
        assert any(n.startswith("**No validation set, so nothing to judge.**") for n in notes)
        assert not any("Learning rate too" in n or "Looks healthy" in n for n in notes), notes
        assert not at.exception
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("query, warned, size, bs", [
    ({"size": "100", "bs": "100"}, {"size", "bs"}, 16, 64),
    ({"size": "8", "bs": "1000"}, {"size", "bs"}, 16, 64),
    ({"size": "64", "bs": "100"}, {"bs"}, 64, 64),
    ({"size": "64", "bs": "32"}, set(), 64, 32),            # an old share link keeps working
    ({"size": "224", "bs": "256"}, set(), 224, 256),
])
def test_a_link_size_the_widget_cannot_show_is_announced(query, warned, size, bs):
    """Defect 9: /train?size=100&bs=100 silently became 16 and 8; now a value outside the
    widget's choices is named in a warning and the page keeps its own value."""
    app = AppTest.from_file(PAGE, default_timeout=120)
    for k, v in query.items():
        app.query_params[k] = v
    app.run()
    assert not app.exception, app.exception
    named = {w.value.split("“")[1].split("”")[0] for w in app.warning
             if w.value.startswith("The link's value for")}
    assert named == warned
    assert (app.selectbox(key=state.T_SIZE).value, app.selectbox(key=state.T_BS).value) == (size, bs)


def test_a_link_under_the_server_folders_is_not_offered(at, data_root, tmp_path):
    """Defect 9: a symbolic link directly under data/folders/ could point anywhere on the server;
    only real folders are offered."""
    outside = tmp_path / "outside-the-data-dir"
    for cls in ("a", "b"):
        (outside / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside / cls / "x.png")
    links = [data_root / "folders" / "u-escape", data_root / "folders" / "u-inside"]
    links[0].symlink_to(outside)
    links[1].symlink_to(data_root / "folders" / "tiny")
    try:
        at.radio(key=state.T_SOURCE).set_value("folder").run()
        assert at.selectbox(key=state.T_FOLDER).options == ["tiny"]
        assert str(outside) not in str(at.session_state[state.T_DATASET])
    finally:
        for link in links:
            link.unlink()


@pytest.mark.parametrize("names, words", [
    (("teddy!", "teddy?"), "would both become the folder “teddy”"),
    (("Grizzly", "grizzly"), "would both become the folder"),
    (("teddy", "teddy "), "“teddy” is given twice"),
])
def test_url_lists_whose_names_clash_are_refused_before_downloading(at, names, words):
    """Defect 7: names that differ only in punctuation or case, or the same class twice, used to
    merge into one folder or overwrite each other; now the page says so and starts nothing."""
    at.radio(key=state.T_SOURCE).set_value("urls").run()
    for i, name in enumerate(names):
        at.text_input(key=state.T_URL_NAME.format(i)).input(name)
        at.text_area(key=state.T_URL_TEXT.format(i)).input(f"https://example.com/{i}.jpg")
    at.run()
    at.button(key=state.T_URL_DL).click().run()
    assert not at.exception, at.exception
    assert any(words in e.value for e in at.error), [e.value for e in at.error]
    assert state.T_JOB not in at.session_state or not at.session_state[state.T_JOB]   # no job


def test_a_typed_class_and_an_uploaded_list_of_the_same_class_are_reported(at):
    at.radio(key=state.T_SOURCE).set_value("urls").run()
    at.text_input(key=state.T_URL_NAME.format(0)).input("teddy")
    at.text_area(key=state.T_URL_TEXT.format(0)).input("https://example.com/1.jpg")
    at.text_input(key=state.T_URL_NAME.format(1)).input("grizzly")
    at.text_area(key=state.T_URL_TEXT.format(1)).input("https://example.com/2.jpg")
    at.run()
    at.file_uploader(key=state.T_URL_FILES).set_value(
        [("urls_teddy.txt", b"https://example.com/3.jpg\n", "text/plain")]).run()
    at.button(key=state.T_URL_DL).click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("“teddy” is given twice (class 1 and urls_teddy.txt)" in e for e in errors), errors
    assert state.T_JOB not in at.session_state or not at.session_state[state.T_JOB]   # no job


def test_a_second_url_download_replaces_the_first_set(at, monkeypatch):
    """Defect 7: a second download (teddy/grizzly after cats/dogs) made a four-class set in the
    session's folder; each download now builds a fresh set of exactly its classes."""
    import functools
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from engine import download

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            buf = io.BytesIO()
            shade = sum(self.path.encode()) % 200
            Image.fromarray(np.full((12, 12, 3), shade, np.uint8)).save(buf, "PNG")
            self.send_response(200)
            self.send_header("Content-Length", str(len(buf.getvalue())))
            self.end_headers()
            self.wfile.write(buf.getvalue())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(download, "download_images",
                        functools.partial(download.download_images, allow_hosts=["127.0.0.1"]))
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        at.radio(key=state.T_SOURCE).set_value("urls").run()
        for names in (("cats", "dogs"), ("teddy", "grizzly")):
            for i, name in enumerate(names):
                at.text_input(key=state.T_URL_NAME.format(i)).input(name)
                at.text_area(key=state.T_URL_TEXT.format(i)).input(
                    "\n".join(f"{base}/{name}/{k}.png" for k in range(3)))
            at.run()
            at.button(key=state.T_URL_DL).click().run()
            wait_until(at, lambda a: a.session_state[state.T_DATASET] is not None
                       and Path(a.session_state[state.T_DATASET]["folder"]).is_dir()
                       and sorted(p.name for p in Path(a.session_state[state.T_DATASET]["folder"])
                                  .iterdir()) == sorted(names)
                       if state.T_DATASET in a.session_state else False, timeout=60)
        folder = Path(at.session_state[state.T_DATASET]["folder"])
        assert sorted(p.name for p in folder.iterdir()) == ["grizzly", "teddy"]
        assert any("4 training and 2 validation images in 2 classes" in c.value
                   for c in at.caption), [c.value for c in at.caption]
        assert not at.error
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_runs_without_a_validation_set_say_so_instead_of_nan():
    from ui.train_run import NO_VALID, _metric
    assert _metric({"error_rate": float("nan")}, "error_rate", "{:.2%}") == NO_VALID
    assert _metric({}, "valid_loss", "{:.4f}") == NO_VALID
    assert _metric({"error_rate": 0.025}, "error_rate", "{:.2%}") == "2.50%"
