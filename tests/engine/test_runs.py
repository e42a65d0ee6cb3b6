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
