"""engine.precompute: training the head on cached body features gives the same model as training it
the long way (same batches, same order, no augmentation, same seed, frozen body in eval mode), the
LR finder agrees too, the cache is reused while the body is unchanged, and misuse is refused."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from engine.data import DataConfig, build_dataloaders
from engine.models import create_model
from engine.precompute import precompute_features, why_not
from engine.training import Learner, TrainingError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of 14 small PNGs each: noisy images tinted red, green or blue."""
    import cv2

    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir()
        for i in range(14):
            img = rng.integers(0, 120, (12, 12, 3), dtype=np.uint8)
            img[..., 2 - c] += 120          # OpenCV writes BGR
            cv2.imwrite(str(root / name / f"{i:02d}.png"), img)
    return root


def _dls(folder, augment=False):
    return build_dataloaders(folder, DataConfig(size=16, bs=8, augment=augment, flip=False,
                                                valid_pct=0.25, seed=3), device="cpu")


def _pair(folder, arch="simple_cnn"):
    """Two Learners with identical models and identical, fresh loaders; body frozen, batch norm
    included (train_bn=False: the long way with fastai's train_bn=True adapts the body's
    statistics to the data, a different model, see test_the_long_way_with_train_bn_differs)."""
    torch.manual_seed(0)
    model = create_model(arch, 3, pretrained=False)
    out = []
    for m in (model, copy.deepcopy(model)):
        learn = Learner(m, _dls(folder), device="cpu")
        learn.freeze(train_bn=False)
        out.append(learn)
    return out


def _head_state(learn):
    return {k: v.detach().clone() for k, v in learn.model.head.state_dict().items()}


def test_precompute_gives_the_same_head_as_the_long_path(folder):
    long, fast = _pair(folder)
    body_before = {k: v.clone() for k, v in long.model.body.state_dict().items()}
    ev_long, ev_fast = [], []
    long.on_event = lambda kind, **e: ev_long.append((kind, e))
    fast.on_event = lambda kind, **e: ev_fast.append((kind, e))
    torch.manual_seed(1)
    rows_long = long.fit_one_cycle(3, 1e-2)
    torch.manual_seed(1)
    rows_fast = fast.fit_one_cycle(3, 1e-2, precompute=True)

    a, b = _head_state(long), _head_state(fast)
    assert a.keys() == b.keys()
    for k in a:   # weights and the head's batch-norm statistics
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    # The body is untouched on both paths, and the full models now agree end to end.
    for k, v in fast.model.body.state_dict().items():
        assert torch.equal(v, body_before[k]), k
    x = next(iter(long.dls.valid))[0]
    long.model.eval(), fast.model.eval()
    torch.testing.assert_close(fast.model(x), long.model(x), rtol=1e-4, atol=1e-4)
    # Same batches in the same order: every batch loss and every epoch's metrics agree.
    bl = [e["loss"] for k, e in ev_long if k == "batch"]
    bf = [e["loss"] for k, e in ev_fast if k == "batch"]
    assert len(bl) == len(bf) == 3 * len(long.dls.train)
    np.testing.assert_allclose(bf, bl, rtol=1e-4, atol=1e-5)
    for r1, r2 in zip(rows_long, rows_fast):
        assert r2["valid_loss"] == pytest.approx(r1["valid_loss"], rel=1e-4, abs=1e-5)
        assert r2["accuracy"] == r1["accuracy"]
    # The features were computed once, train then valid, and reported as progress.
    pre = [e for k, e in ev_fast if k == "precompute"]
    assert pre and pre[-1]["split"] == "valid" and pre[-1]["done"] == pre[-1]["total"]
    # Afterwards the Learner is itself again: full model, image loaders.
    assert fast.dls is not None and hasattr(fast.model, "body") and not fast.model.training
    assert fast.get_preds().accuracy == pytest.approx(long.get_preds().accuracy)


def test_lr_find_on_features_matches_and_restores(folder):
    long, fast = _pair(folder)
    head0 = _head_state(fast)
    torch.manual_seed(2)
    r_long = long.lr_find(num_it=12, end_lr=1.0, stop_div=False)
    torch.manual_seed(2)
    r_fast = fast.lr_find(num_it=12, end_lr=1.0, stop_div=False, precompute=True)
    np.testing.assert_allclose(r_fast.raw_losses, r_long.raw_losses, rtol=1e-4, atol=1e-5)
    assert r_fast.lrs == r_long.lrs
    for k, v in _head_state(fast).items():   # put back exactly as it was
        assert torch.equal(v, head0[k]), k


def test_features_are_cached_until_the_body_changes(folder):
    learn, _ = _pair(folder)
    c1 = precompute_features(learn)
    learn.lr_find(num_it=6, precompute=True)
    learn.fit_one_cycle(1, 1e-2, precompute=True)
    assert precompute_features(learn) is c1          # head training leaves the body alone
    # Pooled vectors, not feature maps: simple_cnn's 128 channels, average and max side by side.
    assert c1.train.features.shape == (len(learn.dls.train.dataset), 256)
    assert c1.n_folded == 1
    learn.unfreeze()
    learn.fit_one_cycle(1, 1e-3)                     # the body moves
    learn.freeze()
    assert precompute_features(learn) is not c1


def test_precompute_is_refused_when_it_would_change_the_model(folder):
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), _dls(folder), device="cpu")
    with pytest.raises(TrainingError, match="frozen"):
        learn.fit_one_cycle(1, 1e-2, precompute=True)
    learn.model.freeze(train_bn=True)
    assert "batch-norm" in why_not(learn)
    aug = Learner(create_model("simple_cnn", 3, pretrained=False), _dls(folder, augment=True),
                  device="cpu")
    aug.freeze()
    with pytest.raises(TrainingError, match="augmentation off"):
        aug.lr_find(num_it=6, precompute=True)


def test_fine_tune_precomputes_only_its_frozen_epochs(folder):
    learn, _ = _pair(folder)
    stages = []
    learn.on_event = lambda kind, **e: stages.append(kind if kind != "fit_start" else e["stage"])
    rows = learn.fine_tune(1, base_lr=1e-2, precompute=True)
    assert [r["stage"] for r in rows] == ["frozen", "unfrozen"]
    # Features first (progress events), then the frozen fit on them, then the long way.
    assert stages.index("precompute") < stages.index("frozen") < stages.index("unfrozen")
    assert "precompute" not in stages[stages.index("unfrozen"):]
    assert not learn.model.frozen


def test_the_long_way_with_train_bn_differs_and_precompute_says_so(folder):
    """fastai's default (train_bn=True) moves the frozen body's batch norm; precompute cannot, so it
    freezes the batch norm too and says so in a note."""
    torch.manual_seed(0)
    model = create_model("simple_cnn", 3, pretrained=False)
    long = Learner(model, _dls(folder), device="cpu")
    fast = Learner(copy.deepcopy(model), _dls(folder), device="cpu")
    for learn in (long, fast):
        learn.freeze()                       # the Learner's default: train_bn=True, as fastai
        assert learn.model.train_bn
    body_before = {k: v.clone() for k, v in long.model.body.state_dict().items()}
    notes = []
    fast.on_event = lambda kind, **e: notes.append(e["message"]) if kind == "note" else None
    long.fit_one_cycle(1, 1e-2)
    fast.fit_one_cycle(1, 1e-2, precompute=True)
    moved = [k for k, v in long.model.body.state_dict().items() if not torch.equal(v, body_before[k])]
    assert any(k.endswith("running_mean") for k in moved)      # statistics followed the data
    assert any(k.endswith(".weight") for k in moved)           # and batch-norm weights trained
    assert all(torch.equal(v, body_before[k]) for k, v in fast.model.body.state_dict().items())
    assert not fast.model.train_bn and "batch-norm" in notes[0]

