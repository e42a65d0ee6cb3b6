"""engine.schedule: the plan a page previews is what the optimiser is given, step for step."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine.models import create_model
from engine.schedule import group_names, plan_run, stages_for
from engine.settings import RunSettings
from engine.training import Learner


class DLs:
    def __init__(self, train, valid, classes):
        self.train, self.valid, self.classes = train, valid, classes


def tiny_dls(n_train: int = 40, bs: int = 8) -> DLs:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_train + 16, 3, 12, 12, generator=g)
    y = torch.arange(n_train + 16) % 2
    train = DataLoader(TensorDataset(x[:n_train], y[:n_train]), batch_size=bs, shuffle=True,
                       drop_last=True, generator=g)
    valid = DataLoader(TensorDataset(x[n_train:], y[n_train:]), batch_size=bs)
    return DLs(train, valid, ["a", "b"])


def applied(learn: Learner, run) -> tuple[np.ndarray, np.ndarray]:
    """Every optimiser group's learning rate (by layer group) and beta1 at each training step."""
    lrs, moms = [], []
    real = learn._train_step_async

    def step(xb, yb):
        per_group = {}
        for g in learn.opt.param_groups:
            per_group[g["layer_group"]] = g["lr"]
        lrs.append([per_group[i] for i in sorted(per_group)])
        moms.append(learn.opt.param_groups[0]["betas"][0])
        return real(xb, yb)

    learn._train_step_async = step
    run()
    return np.asarray(lrs), np.asarray(moms)


@pytest.mark.parametrize("method", ["fit_one_cycle", "fine_tune", "unfreeze"])
def test_the_plan_is_what_the_optimiser_saw(method):
    s = RunSettings(method=method, epochs=2, freeze_epochs=1, lr=3e-3, lr_lo=2e-5,
                    arch="simple_cnn", pretrained=False)
    dls = tiny_dls()
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", 2, pretrained=False), dls, device="cpu")
    lrs, moms = applied(learn, lambda: learn.fit_settings(s))
    plan = plan_run(s.method, s.epochs, s.lr, len(dls.train), learn.n_groups,
                    freeze_epochs=s.freeze_epochs, lr_lo=s.lr_lo)
    assert lrs.shape == plan.lrs.shape
    np.testing.assert_allclose(lrs, plan.lrs, rtol=1e-12)
    np.testing.assert_allclose(moms, plan.moms, rtol=1e-12)
    assert plan.starts == ([0, len(dls.train)] if method == "fine_tune" else [0])


def test_fine_tune_stages_are_fastais():
    frozen, unfrozen = stages_for("fine_tune", 3, 2e-3, freeze_epochs=1)
    assert (frozen.name, frozen.epochs, frozen.lr_max, frozen.pct_start, frozen.freeze) == \
        ("frozen", 1, slice(2e-3), 0.99, True)
    assert (unfrozen.name, unfrozen.epochs, unfrozen.pct_start, unfrozen.div, unfrozen.freeze) == \
        ("unfrozen", 3, 0.3, 5.0, False)
    assert unfrozen.lr_max == slice(1e-3 / 100, 1e-3)
    assert [st.name for st in stages_for("fine_tune", 3, 2e-3, freeze_epochs=0)] == ["unfrozen"]


def test_group_names_and_unknown_method():
    assert group_names(1) == ["all layers"]
    assert group_names(3) == ["early layers", "late layers", "head"]
    with pytest.raises(ValueError, match="fit_one_cycle, fine_tune, unfreeze"):
        stages_for("sgdr", 1, 1e-3)
