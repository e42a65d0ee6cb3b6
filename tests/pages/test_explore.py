"""AppTest for the Explorer page with a tiny stored run (a small CNN trained for one epoch)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ui import state

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "explore.py")
OWNER = "owner-token-a"
CLASSES = ("<em>red", "green", "blue")  # a folder name that looks like HTML


def make_fake_run(data: Path, owner: str = OWNER, per_class: int = 10,
                  shared: bool = False) -> tuple[str, Path]:
    """A coloured-squares data set and a run trained on it; returns (id, folder).

    The data sit in the owner's own session folder (as uploads do), or, with shared=True, in a
    folder every user of the server shares.
    """
    import cv2
    import torch

    from engine.data import DataConfig, build_dataloaders
    from engine.models import create_model
    from engine.runs import save_run
    from engine.training import Learner

    folder = data / "shapes" if shared else data / "sessions" / owner / "shapes"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 80, (20, 20, 3), dtype=np.uint8)
            img[4:16, 4:16, c] = 255                       # a bright square in the class's colour
            cv2.imwrite(str(folder / name / f"{i:02d}.png"), img[..., ::-1])
    torch.manual_seed(0)
    dls = build_dataloaders(folder, DataConfig(size=16, bs=8, flip=False, augment=False))
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), dls, device="cpu", seed=0)
    learn.fit_one_cycle(1, 1e-3)
    info = save_run(learn, owner=owner, data_name="shapes", settings={"arch": "simple_cnn", "size": 16},
                    history={"epochs": learn.history}, status="done")
    return info.id, folder


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One data dir with one run owned by OWNER, shared by the tests of this module."""
    data = tmp_path_factory.mktemp("dllab")
    mp = pytest.MonkeyPatch()
    mp.setenv("DLLAB_DATA", str(data))
    run_id, folder = make_fake_run(data)
    yield run_id, folder, data
    mp.undo()


@pytest.fixture
def env(stored, monkeypatch):
    from engine.paths import data_dir
    run_id, folder, data = stored
    monkeypatch.setenv("DLLAB_DATA", str(data))
    assert data_dir() == data
    return run_id, folder


def app(owner: str = OWNER, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state[state.SESSION_OWNER] = owner
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] +
                     [i.value for i in at.info] + [e.value for e in at.error])


def files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_without_a_run_the_page_points_to_the_train_page(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    at = app()
    assert "no trained model" in at.info[0].value
    assert not at.error
    assert any(b.label.startswith("Make a quick demo run") for b in at.button)


def test_opens_the_sessions_latest_run_with_all_sections(env):
    run_id, _ = env
    at = app()
    assert at.selectbox(key=state.E_RUN).value == run_id
    assert at.query_params["run"] in (run_id, [run_id])
    assert [t.label for t in at.tabs] == ["Mistakes", "Top losses", "Clean", "Predict", "Export", "Inside"]
    assert {m.label for m in at.metric} >= {"Accuracy", "Error rate = 1 − accuracy"}
    assert not at.error
    shown = texts(at)
    # A class name holding HTML is shown as text: escaped for markdown, never as a tag.
    assert "<em>red" not in shown and r"\<em\>red" in shown


def test_clicking_a_cell_shows_its_images(env):
    at = app()
    at.session_state[state.E_CELL] = (0, 0)
    at.run()
    assert not at.exception
    head = [m.value for m in at.markdown if m.value.startswith("#### Actual")]
    assert head and "predicted" in head[0]
    at.button(key="explore.cell_close").click().run()
    assert not [m for m in at.markdown if m.value.startswith("#### Actual")]


def test_top_losses_grad_cam_toggle_and_k(env):
    at = app()
    at.slider(key=state.E_K).set_value(3).run()
    toggles = [t for t in at.toggle if str(t.key).startswith("explore.cam.")]
    assert len(toggles) == 3
    toggles[0].set_value(True).run()
    assert not at.exception and not at.error


def test_relabel_apply_and_undo(env):
    run_id, folder = env
    before = files(folder)
    at = app()
    boxes = [s for s in at.selectbox if str(s.key).startswith("explore.dec.")]
    assert boxes
    boxes[0].select("move:green").run()
    at.radio(key=state.E_CLEAN_SPLIT).set_value("train").run()  # choices persist across sides
    at.radio(key=state.E_CLEAN_SPLIT).set_value("valid").run()
    boxes = [s for s in at.selectbox if str(s.key).startswith("explore.dec.")]
    assert boxes[0].value == "move:green"
    at.button(key="explore.apply").click().run()
    assert not at.exception
    assert "1 relabelled" in at.success[0].value
    after = files(folder)
    assert after != before and sorted(after.values()) == sorted(before.values())
    at.button(key="explore.undo").click().run()
    assert "Undone" in at.success[0].value
    assert files(folder) == before


def test_a_shared_link_opens_read_only(env):
    run_id, folder = env
    before = files(folder)
    at = app(owner="someone-else", query={"run": run_id})
    assert at.selectbox(key=state.E_RUN).value == run_id
    assert any("shared with a link" in i.value for i in at.info)
    assert at.button(key="explore.apply").disabled and at.button(key="explore.undo").disabled
    assert all(s.disabled for s in at.selectbox if str(s.key).startswith("explore.dec."))
    assert files(folder) == before


def test_a_bad_link_is_one_sentence(env):
    at = app(owner="someone-else", query={"run": "../../etc/passwd"})
    assert "not a valid run id" in at.error[0].value
    assert "no trained model" in at.info[0].value


def test_predict_a_validation_image(env):
    at = app()
    shown = texts(at)
    assert "predicted in" in shown and "ms" in shown
    assert any(m.value.startswith("### ") and "%" in m.value for m in at.markdown)


def test_a_run_on_shared_data_cannot_be_cleaned(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    run_id, folder = make_fake_run(tmp_path, shared=True, per_class=6)
    before = files(folder)
    at = app(query={"run": run_id})
    assert any("every user of this server shares" in i.value for i in at.info)
    assert at.button(key="explore.apply").disabled and at.button(key="explore.undo").disabled
    assert files(folder) == before


def test_the_demo_button_makes_a_run_this_session_may_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    at = app()
    at.button(key=state.E_DEMO).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    from engine.runs import list_runs
    (info,) = list_runs(OWNER)
    assert at.selectbox(key=state.E_RUN).value == info.id
    assert not any("every user of this server shares" in i.value for i in at.info)
    assert all(not s.disabled for s in at.selectbox if str(s.key).startswith("explore.dec."))
    assert next((tmp_path / "explore-demo").iterdir()).is_dir()


# Issue 18 -------------------------------------------------------------------------------------


def _strip_png(size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [(3, 2_000_000), (100_000, 3), (20_001, 1_001)], ids=str)
def test_predict_refuses_an_extreme_upload_in_a_sentence(env, size):
    """Defect 2: a tiny PNG of extreme shape (anyone with a share link can upload one) is refused
    before decoding, with a sentence; the page goes on."""
    run_id, _ = env
    at = app(owner="someone-else", query={"run": run_id})
    at.radio(key=state.E_PRED_SOURCE).set_value("upload").run()
    at.file_uploader(key=state.E_UPLOAD).set_value(("strip.png", _strip_png(size), "image/png")).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and f"{size[0]}×{size[1]}" in errors[0] and "limit" in errors[0]
    assert not any(m.value.startswith("### ") for m in at.markdown)      # no prediction shown


@pytest.fixture
def own_store(stored, tmp_path, monkeypatch):
    """A copy of the stored runs in a data dir of this test's own (the data set stays shared)."""
    import shutil
    run_id, folder, data = stored
    shutil.copytree(data / "runs", tmp_path / "runs")
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    return run_id, tmp_path / "runs"


def _tampered_copy(runs_root: Path, run_id: str, file: str, change, owner: str = "mallory") -> str:
    import json
    import secrets
    import shutil
    new_id = secrets.token_urlsafe(16)
    shutil.copytree(runs_root / run_id, runs_root / new_id)
    info = json.loads((runs_root / new_id / "run.json").read_text())
    (runs_root / new_id / "run.json").write_text(json.dumps({**info, "id": new_id, "owner": owner}))
    path = runs_root / new_id / file
    path.write_text(change(path.read_text()))
    return new_id


def test_a_tampered_run_is_one_sentence_and_other_runs_still_open(own_store):
    """Defect 8: a run whose items do not line up (duplicate paths crashed the Clean tab), and a
    run.json with a non-ASCII owner (list_runs raised for every user), in the same store as a good
    run: the bad link is a sentence, the good run opens for its owner and for a link."""
    import json
    run_id, root = own_store
    dup = _tampered_copy(root, run_id, "items.json",
                         lambda t: json.dumps([json.loads(t)[0]] * len(json.loads(t))))
    short = _tampered_copy(root, run_id, "items.json", lambda t: json.dumps(json.loads(t)[:2]))
    _tampered_copy(root, run_id, "run.json",
                   lambda t: json.dumps({**json.loads(t), "owner": "ünïcødé-öwner"}))
    _tampered_copy(root, run_id, "run.json", lambda t: t[: len(t) // 2], owner=OWNER)  # broken
    for bad in (dup, short):
        at = app(owner="someone-else", query={"run": bad})
        assert any("damaged" in e.value for e in at.error), [e.value for e in at.error]
    at = app(owner="mallory")                 # its owner's newest run is damaged: a sentence too
    assert any("damaged" in e.value for e in at.error), [e.value for e in at.error]
    at = app()                                               # the owner's list: the good run
    assert at.selectbox(key=state.E_RUN).value == run_id and not at.error
    assert "predicted in" in texts(at)
    at = app(owner="ünïcødé-öwner")                            # even that token lists nothing bad
    assert not at.error


def _all_text(at: AppTest) -> str:
    """Every visible string, widget labels and options included."""
    parts = [texts(at)] + [w.value for w in at.warning] + [s.value for s in at.success]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    for box in at.selectbox:
        parts += [box.label] + [str(o) for o in box.options]
    return "\n".join(parts)


def test_a_run_without_a_validation_set_says_so_instead_of_nan(tmp_path, monkeypatch):
    """Defect 5: a run trained on one image per class has no validation set; the Explorer said
    "Accuracy nan%" (and "error rate nan%" in the run list). It now says there is no validation
    set, in every tab that would have shown NaN, and still predicts an upload."""
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    run_id, _ = make_fake_run(tmp_path, per_class=1)
    at = app()
    shown = _all_text(at)
    assert "nan" not in shown.lower(), [line for line in shown.splitlines() if "nan" in line.lower()]
    assert " · no validation set · " in at.selectbox(key=state.E_RUN).options[0]
    infos = [i.value for i in at.info if "no validation set" in i.value]
    assert len(infos) == 3          # Mistakes, Top losses, Clean
    assert not at.error and not at.metric
    at.radio(key=state.E_PRED_SOURCE).set_value("upload").run()
    at.file_uploader(key=state.E_UPLOAD).set_value(("photo.png", _strip_png((20, 20)),
                                                    "image/png")).run()
    assert not at.exception and "predicted in" in texts(at)


def test_export_of_a_run_without_its_model_says_why(own_store):
    """Defect 9: a run whose model file is missing offered a "0.0 MB" download that did nothing;
    now the tab says why and offers neither the download nor the serve commands. A damaged model
    file is a sentence too."""
    import shutil
    run_id, root = own_store
    for label, damage in (("missing", lambda p: p.unlink()),
                          ("empty", lambda p: p.write_bytes(b"")),
                          ("garbage", lambda p: p.write_bytes(b"\x08" + b"\0" * 7 + b"{}" * 8))):
        new_id = _tampered_copy(root, run_id, "run.json", lambda t: t, owner=OWNER)
        damage(root / new_id / "model.safetensors")
        at = app(query={"run": new_id})
        assert not at.exception, at.exception
        assert at.selectbox(key=state.E_RUN).value == new_id
        warnings = [w.value for w in at.warning if "model" in w.value]
        assert len(warnings) == 1, (label, [w.value for w in at.warning])
        if label == "missing":
            assert "no model file" in warnings[0] and "nothing to download" in warnings[0]
        else:
            assert "cannot be exported" in warnings[0]
        assert not at.get("download_button"), label
        assert "0.0 MB" not in _all_text(at)
        shutil.rmtree(root / new_id)
    at = app(query={"run": run_id})                   # the intact run still offers its zip
    buttons = at.get("download_button")
    assert len(buttons) == 1 and "MB zip" in buttons[0].proto.label


def test_a_stale_clean_choice_does_not_block_apply(tmp_path, monkeypatch):
    """Defect 9: a choice made for a file that then vanished (another tab cleaned it, the Train
    page quarantined it) made every later Apply fail until a reload. Apply now carries out the
    other choices, says which were left out, and the next Apply works."""
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    run_id, folder = make_fake_run(tmp_path, per_class=10)
    at = app()
    boxes = [s for s in at.selectbox if str(s.key).startswith("explore.dec.")]
    assert len(boxes) >= 2
    boxes[0].select("delete").run()
    boxes = [s for s in at.selectbox if str(s.key).startswith("explore.dec.")]
    boxes[1].select("move:green").run()
    chosen = dict(at.session_state[state.E_DECISIONS][run_id])
    assert len(chosen) == 2
    gone = next(p for p, d in chosen.items() if d == "delete")
    Path(gone).unlink()                                   # another tab cleaned it meanwhile
    at.button(key="explore.apply").click().run()
    # (The Predict tab may say its validation image moved: that is the file removed here.)
    assert not at.exception and not any("no longer where" in e.value for e in at.error)
    done = [s.value for s in at.success]
    assert done and "1 relabelled" in done[0] and "1 chosen image was no longer there" in done[0]
    assert at.session_state[state.E_DECISIONS][run_id] == {}
    at.selectbox(key=state.E_CLEAN_CLASS).set_value("blue").run()   # the first class is empty now
    boxes = [s for s in at.selectbox if str(s.key).startswith("explore.dec.")]
    boxes[0].select("delete").run()                        # the next Apply is not blocked
    at.button(key="explore.apply").click().run()
    assert not any("no longer where" in e.value for e in at.error)
    assert "1 image moved to quarantine" in at.success[0].value
    at.button(key="explore.undo").click().run()
    assert "Undone" in at.success[0].value
