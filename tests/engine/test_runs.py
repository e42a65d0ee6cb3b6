"""engine.runs: a saved run reads back exactly; ids are checked before the disk is touched, and
nothing outside the runs folder can be opened through an id."""
from __future__ import annotations

import json
import secrets

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine import runs
from engine.models import create_model
from engine.training import Learner


class DLs:
    def __init__(self, train, valid, classes, **extra):
        self.train, self.valid, self.classes = train, valid, classes
        self.__dict__.update(extra)


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path / "appdata"))


def tiny_learner() -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 8, 8, generator=g)
    y = torch.randint(0, 2, (40,), generator=g)
    dls = DLs(DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8),
              DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8), ["cat", "dog"],
              valid_items=[(f"/data/set/{i}.png", int(t)) for i, t in enumerate(y[32:])], size=8,
              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.manual_seed(0)
    return Learner(create_model("simple_cnn", 2, pretrained=False), dls, device="cpu")


@pytest.fixture
def saved():
    learn = tiny_learner()
    learn.fit_one_cycle(1, 1e-3)
    info = runs.save_run(learn, owner="alice-token", data_name="tiny",
                         settings={"arch": "simple_cnn", "lr": 1e-3, "lrs": slice(1e-5, 1e-3)},
                         history={"batches": [{"step": 1, "loss": 0.7}], "epochs": learn.history,
                                  "lr_find": None}, status="done")
    return learn, info


def test_round_trip(saved):
    learn, info = saved
    assert runs.RUN_ID.match(info.id)
    run = runs.load_run(info.id)
    preds = learn.get_preds()
    np.testing.assert_allclose(run.probs, preds.probs, rtol=1e-6)
    np.testing.assert_array_equal(run.targets, preds.targets)
    np.testing.assert_allclose(run.losses, preds.losses, rtol=1e-6)
    assert run.probs.dtype == np.float32 and run.targets.dtype == np.int64
    assert run.classes == ["cat", "dog"] and run.info.data == "tiny" and run.info.epochs == 1
    assert run.items[0] == ("/data/set/0.png", int(preds.targets[0]))
    assert run.settings["arch"] == "simple_cnn" and run.history["epochs"][0]["epoch"] == 0
    assert run.info.metrics["accuracy"] == pytest.approx(preds.accuracy)
    assert run.info.metrics["error_rate"] == pytest.approx(1 - preds.accuracy)
    ck = run.load_model()
    assert ck.classes == ["cat", "dog"]
    for k, v in learn.model.state_dict().items():
        torch.testing.assert_close(ck.model.state_dict()[k], v)
    # model.json describes the checkpoint without opening it
    assert json.loads((run.dir / "model.json").read_text())["arch"] == "simple_cnn"


def test_list_runs_by_owner_newest_first(saved):
    _, first = saved
    learn = tiny_learner()
    second = runs.save_run(learn, owner="alice-token", data_name="tiny", settings={}, history={},
                           status="cancelled")
    other = runs.save_run(learn, owner="bob-token", data_name="tiny", settings={}, history={},
                          status="done")
    assert [r.id for r in runs.list_runs("alice-token")] == [second.id, first.id]
    assert [r.id for r in runs.list_runs("bob-token")] == [other.id]
    assert len(runs.list_runs()) == 3
    assert runs.list_runs("carol-token") == []


def test_bad_status_and_no_partial_folder_on_failure(monkeypatch):
    learn = tiny_learner()
    with pytest.raises(runs.RunError):
        runs.save_run(learn, owner="a", data_name="x", settings={}, history={}, status="weird")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(learn, "save", boom)
    with pytest.raises(OSError):
        runs.save_run(learn, owner="a", data_name="x", settings={}, history={}, status="done")
    assert list(runs.runs_dir().iterdir()) == []


@pytest.mark.parametrize("bad", [
    "../etc/passwd", "..%2f..%2fetc", "%2e%2e/%2e%2e/secret", "/etc/passwd", "", "a" * 21, "a" * 23,
    "abc/def/ghi/jkl/mnopqrst", "..", "aaaaaaaaaaaaaaaaaaaa..", None, 12345,
])
def test_malformed_ids_are_refused_before_the_disk(bad, monkeypatch):
    touched = []
    monkeypatch.setattr(runs, "runs_dir", lambda: touched.append(1) or pytest.fail("disk touched"))
    with pytest.raises(runs.RunError):
        runs.load_run(bad)
    assert touched == []


def test_unknown_id_and_sibling_prefix_and_symlink(tmp_path, saved):
    with pytest.raises(runs.RunError, match="no saved run"):
        runs.load_run(secrets.token_urlsafe(16))
    # A folder next to runs/ whose name starts the same must never be reachable.
    sibling = runs.runs_dir().parent / "runs-evil"
    sibling.mkdir()
    rid = secrets.token_urlsafe(16)
    (sibling / rid).mkdir()
    with pytest.raises(runs.RunError):
        runs.load_run(rid)
    # A link planted inside runs/ that points outside is refused too.
    outside = tmp_path / "outside"
    outside.mkdir()
    link_id = secrets.token_urlsafe(16)
    (runs.runs_dir() / link_id).symlink_to(outside)
    with pytest.raises(runs.RunError):
        runs.load_run(link_id)
    assert link_id not in [r.id for r in runs.list_runs()]


def test_damaged_run_is_a_sentence(saved):
    _, info = saved
    (runs.runs_dir() / info.id / "preds.npz").write_bytes(b"not a zip")
    with pytest.raises(runs.RunError, match="damaged"):
        runs.load_run(info.id)


def test_pickled_preds_are_refused(saved):
    _, info = saved
    path = runs.runs_dir() / info.id / "preds.npz"
    np.savez(path, probs=np.array([object()], dtype=object), targets=np.zeros(1, np.int64),
             losses=np.zeros(1, np.float32))
    with pytest.raises(runs.RunError):
        runs.load_run(info.id)


def test_delete_only_by_owner(saved):
    _, info = saved
    with pytest.raises(runs.RunError):
        runs.delete_run(info.id, "mallory")
    runs.delete_run(info.id, "alice-token")
    assert runs.list_runs() == []


# ----------------------------------------------------------------------------------------------
# Issue 18, defect 8: run files are validated on load; a bad run is a sentence and never affects
# other runs


def _copy_run(info: runs.RunInfo, **run_json) -> str:
    """A copy of a saved run under a new id, with run.json fields replaced; returns the id."""
    import shutil

    new_id = secrets.token_urlsafe(16)
    folder = runs.runs_dir() / new_id
    shutil.copytree(runs.runs_dir() / info.id, folder)
    meta = json.loads((folder / "run.json").read_text())
    meta.update({"id": new_id, **run_json})
    (folder / "run.json").write_text(json.dumps(meta, ensure_ascii=False))
    return new_id


def _rewrite(run_id: str, name: str, change) -> None:
    path = runs.runs_dir() / run_id / name
    if name == "preds.npz":
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        change(arrays)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    else:
        value = json.loads(path.read_text())
        value = change(value) if callable(change) else change
        path.write_text(value if isinstance(value, str) else json.dumps(value))


TAMPERED = {
    "fewer files than predictions": ("items.json", lambda v: v[:-1]),
    "more files than predictions": ("items.json", lambda v: v + [["/data/set/x.png", 0]]),
    "a file's label differs": ("items.json", lambda v: [[v[0][0], 1 - v[0][1]]] + v[1:]),
    "the same file twice": ("items.json", lambda v: [v[0], [v[0][0], v[1][1]]] + v[2:]),
    "items are not pairs": ("items.json", lambda v: [{"path": p} for p, _ in v]),
    "a label is text": ("items.json", lambda v: [[p, str(y)] for p, y in v]),
    "items.json is an object": ("items.json", {"a": 1}),
    "a true class out of range": ("preds.npz", lambda z: z.__setitem__("targets", z["targets"] + 5)),
    "a negative true class": ("preds.npz", lambda z: z.__setitem__("targets", z["targets"] - 9)),
    "one column too many": ("preds.npz",
                            lambda z: z.__setitem__("probs", np.hstack([z["probs"], z["probs"][:, :1]]))),
    "probs flattened": ("preds.npz", lambda z: z.__setitem__("probs", z["probs"].ravel())),
    "losses cut short": ("preds.npz", lambda z: z.__setitem__("losses", z["losses"][:-1])),
    "history is a list": ("history.json", [1, 2]),
    "settings are text": ("settings.json", "just text"),
    "history nested 100,000 deep": ("history.json", "[" * 100_000 + "]" * 100_000),
    "classes is a string": ("run.json", lambda v: {**v, "classes": "cat"}),
    "one class fewer": ("run.json", lambda v: {**v, "classes": v["classes"][:1]}),
    "no classes": ("run.json", lambda v: {**v, "classes": []}),
    "created is 1e999": ("run.json", lambda v: json.dumps(v).replace(
        f'"created": {json.dumps(v["created"])}', '"created": 1e999')),
    "created has 400 digits": ("run.json", lambda v: json.dumps(v).replace(
        f'"created": {json.dumps(v["created"])}', '"created": 1' + "0" * 400)),
    "epochs is huge": ("run.json", lambda v: {**v, "epochs": 10 ** 30}),
    "epochs is true": ("run.json", lambda v: {**v, "epochs": True}),
    "metrics are a list": ("run.json", lambda v: {**v, "metrics": [1, 2]}),
    "owner is not ASCII": ("run.json", lambda v: {**v, "owner": "ålice-tøken"}),
    "owner is a number": ("run.json", lambda v: {**v, "owner": 7}),
    "owner has a lone surrogate": ("run.json", lambda v: json.dumps(v).replace(
        '"alice-token"', '"\\ud800"')),
    "run.json names another run": ("run.json", lambda v: {**v, "id": secrets.token_urlsafe(16)}),
    "run.json is a list": ("run.json", [1, 2, 3]),
    "run.json is broken": ("run.json", '{"id": "'),
    "run.json is null": ("run.json", None),
}


#: Faults run.json alone cannot show (list_runs reads nothing else): listed, refused when opened.
LISTED = {"one class fewer"}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_run_is_a_sentence_and_the_others_stay(saved, case):
    _, good = saved
    bad = _copy_run(good)
    name, change = TAMPERED[case]
    _rewrite(bad, name, change)
    with pytest.raises(runs.RunError, match="damaged") as err:
        runs.load_run(bad)
    assert len(str(err.value)) < 300
    # every other run is untouched by it: listed, opened, its owner's list complete
    listed = [r.id for r in runs.list_runs("alice-token")]
    assert good.id in listed and set(listed) <= {good.id, bad}
    assert runs.load_run(good.id).info.id == good.id
    if name == "run.json" and case not in LISTED:
        assert bad not in [r.id for r in runs.list_runs()]
        with pytest.raises(runs.RunError, match="damaged"):
            runs.read_info(bad)


def test_list_runs_survives_every_broken_run_at_once(saved):
    """All the run.json faults side by side: each is skipped, alice's and bob's runs are listed
    for them, and asking with a token that is not ASCII is an empty list, not a TypeError."""
    _, good = saved
    bob = _copy_run(good, owner="bob-token")
    for case, (name, change) in TAMPERED.items():
        if name == "run.json" and case not in LISTED:
            _rewrite(_copy_run(good), name, change)
    (runs.runs_dir() / secrets.token_urlsafe(16)).mkdir()              # no run.json at all
    big = _copy_run(good)
    (runs.runs_dir() / big / "run.json").write_text(" " * (2 * 1024 * 1024) + "{}")
    assert [r.id for r in runs.list_runs("alice-token")] == [good.id]
    assert [r.id for r in runs.list_runs("bob-token")] == [bob]
    assert sorted(r.id for r in runs.list_runs()) == sorted([good.id, bob])
    for odd in ("ålice-tøken", "\ud800", "", "a" * 10_000):
        assert runs.list_runs(odd) == []
    with pytest.raises(runs.RunError, match="Only the session"):
        runs.delete_run(good.id, "ålice-tøken")
    assert runs.same_owner("ålice", "ålice") and not runs.same_owner("ålice", "alice")


def test_a_run_file_over_the_size_cap_is_refused_before_it_is_read(saved, monkeypatch):
    _, good = saved
    monkeypatch.setattr(runs, "MAX_JSON_BYTES", 64)
    with pytest.raises(runs.RunError, match="damaged"):
        runs.load_run(good.id)


def test_an_empty_validation_set_still_opens(saved):
    """A run whose validation set was empty (one image per class) is not damaged: 0 predictions,
    one column per class."""
    _, good = saved
    run_id = _copy_run(good)
    _rewrite(run_id, "items.json", [])
    _rewrite(run_id, "preds.npz", lambda z: z.update(probs=z["probs"][:0], targets=z["targets"][:0],
                                                      losses=z["losses"][:0]))
    run = runs.load_run(run_id)
    assert run.probs.shape == (0, 2) and run.items == []
