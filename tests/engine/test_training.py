"""engine.training: schedules against closed-form cosines, LR-finder rules against known answers
and fastai's own numbers, lr_find restoring state bit for bit, freezing, slices, events, cancel,
predictions, and a short real training run on the digits."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine.models import create_model, even_mults
from engine.settings import RunSettings
from engine.training import (Learner, TrainingError, default_device, minimum,
                             one_cycle_schedule, slide, steep, suggest, trim_for_suggestions, valley)


class DLs:
    """The smallest object a Learner accepts: .train, .valid, .classes (plus optional extras)."""

    def __init__(self, train, valid, classes, **extra):
        self.train, self.valid, self.classes = train, valid, classes
        self.__dict__.update(extra)


def blob_dls(n_train=96, n_valid=32, size=8, bs=16, seed=0) -> DLs:
    """Three classes of 3×size×size images, each a noisy constant colour: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.randint(0, 3, (n,), generator=g)
        x = torch.randn(n, 3, size, size, generator=g) * 0.5
        x[torch.arange(n), y] += 1.5
        return x, y

    xt, yt = make(n_train)
    xv, yv = make(n_valid)
    train = DataLoader(TensorDataset(xt, yt), batch_size=bs, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(seed))
    valid = DataLoader(TensorDataset(xv, yv), batch_size=bs)
    items = [(f"img{i}.png", int(t)) for i, t in enumerate(yv)]
    return DLs(train, valid, ["red", "green", "blue"], valid_items=items, size=size,
               mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def small_learner(**kw) -> Learner:
    torch.manual_seed(0)
    return Learner(create_model("simple_cnn", 3, pretrained=False), blob_dls(), device="cpu", **kw)


def cos_anneal(a, b, p):
    # Written as a weighted mean, unlike the engine's start + (1 + cos(pi(1-p)))(end-start)/2.
    w = 0.5 * (1 - math.cos(math.pi * p))
    return (1 - w) * a + w * b


# --------------------------------------------------------------------------------- one-cycle


def test_one_cycle_start_peak_end_and_closed_form():
    n, lr, div, div_final, pct = 100, 1e-2, 25.0, 1e5, 0.25
    s = one_cycle_schedule(n, lr, div=div, div_final=div_final, pct_start=pct)
    assert s.lrs.shape == (n, 1) and s.moms.shape == (n,)
    assert s.lrs[0, 0] == pytest.approx(lr / div, rel=1e-12)
    assert s.lrs[25, 0] == pytest.approx(lr, rel=1e-12)           # step pct_start*n is the peak
    assert s.lrs[:, 0].argmax() == 25
    assert s.moms[0] == pytest.approx(0.95) and s.moms[25] == pytest.approx(0.85)
    # Steps sit at i/n, so the last is one step short of lr/div_final and very close to it.
    assert s.lrs[-1, 0] == pytest.approx(cos_anneal(lr, lr / div_final, 74 / 75), rel=1e-12)
    assert s.lrs[-1, 0] < lr / 1000
    for i in range(n):
        pos = i / n
        if pos < pct:
            want_lr, want_mom = cos_anneal(lr / div, lr, pos / pct), cos_anneal(0.95, 0.85, pos / pct)
        else:
            q = (pos - pct) / (1 - pct)
            want_lr, want_mom = cos_anneal(lr, lr / div_final, q), cos_anneal(0.85, 0.95, q)
        assert s.lrs[i, 0] == pytest.approx(want_lr, rel=1e-12, abs=1e-18)
        assert s.moms[i] == pytest.approx(want_mom, rel=1e-12)


def test_one_cycle_slice_spreads_over_groups():
    s = one_cycle_schedule(10, slice(1e-5, 1e-3), n_groups=3, pct_start=0.3)
    assert s.lrs.shape == (10, 3)
    np.testing.assert_allclose(s.lrs[3], [1e-5, 1e-4, 1e-3], rtol=1e-12)
    np.testing.assert_allclose(s.lrs[0], np.array([1e-5, 1e-4, 1e-3]) / 25, rtol=1e-12)
    # slice(hi): body groups at hi/10, head at hi (fastai's reading).
    np.testing.assert_allclose(one_cycle_schedule(4, slice(1e-3), n_groups=3, pct_start=0.0).lrs[0],
                               [1e-4, 1e-4, 1e-3], rtol=1e-12)


def test_trainer_applies_exactly_the_schedule():
    learn = small_learner()
    seen = []
    step = learn.opt.step

    def spy(*a, **k):
        seen.append(([g["lr"] for g in learn.opt.param_groups],
                     [g["betas"][0] for g in learn.opt.param_groups],
                     [g["layer_group"] for g in learn.opt.param_groups]))
        return step(*a, **k)

    learn.opt.step = spy
    learn.fit_one_cycle(2, slice(1e-4, 1e-2), pct_start=0.3)
    sched = one_cycle_schedule(2 * len(learn.dls.train), slice(1e-4, 1e-2), pct_start=0.3, n_groups=3)
    assert len(seen) == len(sched)
    for i, (lrs, moms, groups) in enumerate(seen):
        assert lrs == [sched.lrs[i, g] for g in groups]
        assert moms == [sched.moms[i]] * len(groups)


# -------------------------------------------------------------------------- suggestion rules

LOG_LRS = 10.0 ** np.linspace(-6, 0, 40)


def test_minimum_is_a_tenth_of_the_lr_at_the_lowest_loss():
    lrs = np.array([1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    assert minimum(lrs, np.array([3.0, 2.0, 1.0, 2.0, 9.0])) == pytest.approx(1e-4)


def test_steep_is_the_left_end_of_the_steepest_drop():
    lrs = 10.0 ** np.arange(-6, 0)
    # Drops: 0.1, 0.9 (the steepest, between points 1 and 2), 0.1, 0.1, then a rise.
    assert steep(lrs, np.array([5.0, 4.9, 4.0, 3.9, 3.8, 4.5])) == lrs[1]


def test_valley_on_a_falling_line_and_a_u_curve():
    lrs = 10.0 ** np.linspace(-6, 0, 11)
    # Ten falling points: run length 10 ending at 9, start 9-10 = -1 (fastai's own off-by-one);
    # sections 3.33 -> index -1 + 3 + 1 = 3.
    assert valley(lrs[:10], np.arange(10, 0, -1.0)) == lrs[3]
    # Longest fall 7,6,5,4,3,2,1 at indices 2..8: start 8-7 = 1, sections 2.33 -> 1 + 2 + 1 = 4.
    assert valley(lrs, np.array([5, 6, 7, 6, 5, 4, 3, 2, 1, 2, 3.0])) == lrs[4]


def test_slide_stops_where_the_gradient_flattens():
    i = np.arange(40)
    losses = np.where(i >= 25, 1 + 0.02 * (i - 24.0) ** 2, 1.0)
    # np.gradient is 0 on the flat part, c/2 = 0.01 at 24, then rising. The window (lr_diff 15)
    # slides left while the gradient at its right end exceeds 0.005: last left end is 9.
    assert slide(LOG_LRS, losses) == LOG_LRS[9]
    assert slide(LOG_LRS, losses, adjust_value=0.5) == LOG_LRS[9] * 0.5


# fastai's own numbers for the four rules: tests/engine/test_fastai_reference.py.


def test_trim_drops_ends_and_cuts_at_the_first_nan():
    lrs = list(np.arange(1.0, 31.0))
    losses = [1.0] * 20 + [float("nan")] + [1.0] * 9
    t_lrs, t_losses = trim_for_suggestions(lrs, losses, num_it=30)
    assert t_lrs.dtype == np.float32
    assert list(t_lrs) == list(np.arange(4.0, 21.0))   # [30//10 : -5] then up to the NaN at 20
    assert not np.isnan(t_losses).any()
    out = suggest(lrs[:12], [3.0] * 12, num_it=12)
    assert out["slide"] is None and out["minimum"] is not None   # slide needs > 15 points


# ------------------------------------------------------------------------------------ lr_find


def _state(learn):
    return ({k: v.clone() for k, v in learn.model.state_dict().items()},
            learn.opt.state_dict())


def _same_opt_state(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for name, v in a["state"][k].items():
            assert torch.equal(v, b["state"][k][name]), name


def test_lr_find_restores_model_and_optimiser_bit_for_bit():
    learn = small_learner()
    learn.fit_one_cycle(1, 1e-3)         # the optimiser now has moments to lose
    import copy
    model_before, opt_before = _state(learn)
    opt_before = copy.deepcopy(opt_before)
    events = []
    learn.on_event = lambda kind, **e: events.append(kind)
    res = learn.lr_find(num_it=12, end_lr=1.0)
    model_after, opt_after = _state(learn)
    assert model_before.keys() == model_after.keys()
    for k in model_before:
        assert torch.equal(model_before[k], model_after[k]), k
    _same_opt_state(opt_before, opt_after)
    assert len(res.lrs) == 12 and events.count("lr_find") == 12
    # Exponential: lr_i = start * (end/start)^(i/num_it).
    np.testing.assert_allclose(res.lrs, [1e-7 * (1.0 / 1e-7) ** (i / 12) for i in range(12)], rtol=1e-12)
    # Smoothed loss: EMA with beta 0.98, debiased.
    avg = 0.0
    for i, loss in enumerate(res.raw_losses, 1):
        avg = 0.98 * avg + 0.02 * loss
        assert res.losses[i - 1] == pytest.approx(avg / (1 - 0.98 ** i), rel=1e-12)


def test_lr_find_runs_at_least_six_steps_and_stops_on_divergence():
    learn = small_learner()
    assert len(learn.lr_find(num_it=2).lrs) == 6
    res = learn.lr_find(start_lr=1e-3, end_lr=1e6, num_it=60)
    assert res.stopped_early and len(res.lrs) < 60
    assert res.losses[-1] > 4 * min(res.losses)
    assert all(v < 4 * min(res.losses[:i + 1]) for i, v in enumerate(res.losses[:-1]))


# ------------------------------------------------------------------------ freezing and slices


def _body(learn):
    return {k: v.clone() for k, v in learn.model.body.state_dict().items()}


def _one_step(learn):
    learn.model.train()
    xb, yb = next(iter(learn.dls.train))
    learn._set_hypers([1e-2])
    learn._train_step(xb, yb)


def test_freeze_keeps_the_body_unchanged_and_unfreeze_trains_it():
    learn = small_learner()
    learn.freeze(train_bn=False)                                   # batch norm frozen too
    body, head = _body(learn), {k: v.clone() for k, v in learn.model.head.state_dict().items()}
    _one_step(learn)
    after = _body(learn)
    assert all(torch.equal(body[k], after[k]) for k in body)       # weights and BN statistics
    assert any(not torch.equal(head[k], v) for k, v in learn.model.head.state_dict().items())
    learn.unfreeze()
    _one_step(learn)
    assert any(not torch.equal(after[k], v) for k, v in learn.model.body.state_dict().items())


def test_freeze_by_default_trains_the_body_batch_norm_as_fastai():
    learn = small_learner()
    learn.freeze()                                                 # train_bn=True by default
    assert learn.train_bn and learn.model.train_bn
    body = _body(learn)
    _one_step(learn)
    after = _body(learn)
    changed = {k for k in body if not torch.equal(body[k], after[k])}
    bn_names = {n for n, m in learn.model.body.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert changed and all(k.rsplit(".", 1)[0] in bn_names for k in changed)   # only batch norm
    assert {k.rsplit(".", 1)[1] for k in changed} >= {"weight", "bias", "running_mean", "running_var"}
    assert all(not p.requires_grad for n, p in learn.model.body.named_parameters()
               if n.rsplit(".", 1)[0] not in bn_names)             # requires_grad as before


def _adam_state(learn):
    return {id(p): dict(st) for p, st in learn.opt.state.items()}


def test_optimizer_state_starts_afresh_when_the_frozen_part_changes():
    """fastai's freeze_to creates a new optimiser state: Adam's averages and step counts start again."""
    learn = small_learner()
    learn.freeze()
    learn.fit_one_cycle(1, 1e-2)
    head = [p for p in learn.model.head.parameters()]
    assert all(int(learn.opt.state[p]["step"]) == len(learn.dls.train) for p in head)
    learn.unfreeze()
    assert _adam_state(learn) == {}
    _one_step(learn)
    steps = {int(st["step"]) for st in learn.opt.state.values()}
    assert steps == {1} and len(learn.opt.state) == len(list(learn.model.parameters()))
    learn.freeze()
    assert _adam_state(learn) == {}
    # fine_tune freezes, then unfreezes: the unfrozen stage starts with a fresh state too.
    seen = []
    real = learn._fit

    def spy(*a, **k):
        seen.append(len(learn.opt.state))
        return real(*a, **k)

    learn._fit = spy
    learn.fine_tune(1, base_lr=1e-3)
    assert seen == [0, 0]


def test_precision_is_recorded_and_can_be_forced():
    learn = small_learner()
    assert learn.precision == "fp32" and learn.amp_dtype is None        # a CPU trains in fp32
    starts = []
    learn.on_event = lambda kind, **e: starts.append(e) if kind == "fit_start" else None
    learn.fit_one_cycle(1, 1e-2)
    assert starts[0]["precision"] == "fp32"
    forced = small_learner(precision="bf16")
    assert forced.precision == "bf16" and forced.amp_dtype is torch.bfloat16 and forced.scaler is None
    assert small_learner(mixed_precision=True).precision == "bf16"     # the older switch still works
    assert small_learner(precision="fp32", mixed_precision=True).precision == "fp32"
    with pytest.raises(TrainingError, match="choose one of auto, fp32, bf16, fp16"):
        small_learner(precision="fp8")


def test_optimizer_is_fastai_adamw_without_decay_on_bn_and_bias():
    learn = small_learner()
    for g in learn.opt.param_groups:
        assert g["betas"] == (0.9, 0.99) and g["eps"] == 1e-5
        is_bn_or_bias = all(p.ndim == 1 for p in g["params"])
        assert g["weight_decay"] == (0.0 if is_bn_or_bias else 0.01)
    assert sorted({g["layer_group"] for g in learn.opt.param_groups}) == [0, 1, 2]


def test_fine_tune_stages_and_discriminative_rates():
    learn = small_learner()
    starts = []
    learn.on_event = lambda kind, **e: starts.append(e) if kind == "fit_start" else None
    rows = learn.fine_tune(1, base_lr=2e-3, freeze_epochs=1)
    assert [r["stage"] for r in rows] == ["frozen", "unfrozen"]
    frozen, unfrozen = starts
    np.testing.assert_allclose(frozen["lrs"], [2e-4, 2e-4, 2e-3], rtol=1e-6)  # slice(base_lr)
    np.testing.assert_allclose(unfrozen["lrs"], even_mults(1e-5, 1e-3, 3), rtol=1e-6)
    assert not learn.model.frozen


# ------------------------------------------------------------------------ events and cancel


def test_events_per_batch_and_per_epoch():
    learn = small_learner()
    events = []
    learn.on_event = lambda kind, **e: events.append((kind, e))
    learn.fit_one_cycle(2, 1e-3)
    batches = [e for k, e in events if k == "batch"]
    epochs = [e for k, e in events if k == "epoch"]
    assert len(batches) == 2 * len(learn.dls.train) and [b["step"] for b in batches][:2] == [1, 2]
    assert {"step", "lr", "loss", "smooth_loss"} <= set(batches[0])
    assert len(epochs) == 2
    for e in epochs:
        assert {"train_loss", "valid_loss", "error_rate", "accuracy", "seconds"} <= set(e)
        assert e["error_rate"] == pytest.approx(1 - e["accuracy"])


def test_cancel_keeps_the_last_finished_epoch():
    learn = small_learner()
    stop = threading.Event()
    kept = {}

    def on_event(kind, **e):
        if kind == "epoch" and e["epoch"] == 0:
            kept.update({k: v.clone() for k, v in learn.model.state_dict().items()})
        if kind == "batch" and e["epoch"] == 1 and e["step"] == len(learn.dls.train) + 2:
            stop.set()

    learn.on_event, learn._should_stop = on_event, stop
    rows = learn.fit_one_cycle(3, 1e-2)
    assert learn.cancelled and len(rows) == 1
    state = learn.model.state_dict()
    assert all(torch.equal(kept[k], state[k]) for k in kept)


def test_cancel_flag_works_with_a_job_context():
    from engine.jobs import JobRunner

    def job(ctx):
        learn = Learner(create_model("simple_cnn", 3, pretrained=False), blob_dls(), device="cpu",
                        on_event=ctx.emit, should_stop=lambda: ctx.cancelled)
        ctx.job.cancel()                 # pressed before the first batch
        return learn.fit_one_cycle(1, 1e-3), learn.cancelled

    runner = JobRunner()
    j = runner.submit("train", job)
    assert j.wait(60)
    rows, cancelled = j.result
    assert rows == [] and cancelled and j.status == "cancelled"
    assert [e["kind"] for e in j.events()] == ["fit_start", "fit_end"]
    runner.shutdown()


# -------------------------------------------------------------------- predictions and device


def test_get_preds_and_predict():
    learn = small_learner()
    learn.fit_one_cycle(1, 1e-2)
    p = learn.get_preds()
    n = len(learn.dls.valid.dataset)
    assert p.probs.shape == (n, 3) and p.targets.shape == (n,) and p.losses.shape == (n,)
    np.testing.assert_allclose(p.probs.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(p.losses, -np.log(p.probs[np.arange(n), p.targets]), rtol=1e-4, atol=1e-6)
    assert p.paths == [path for path, _ in learn.dls.valid_items]
    assert p.accuracy == pytest.approx(learn.validate()["accuracy"])
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 2] = 255                                              # a blue picture
    cls, idx, probs = learn.predict(img)
    assert cls == learn.dls.classes[idx] and probs.shape == (3,) and idx == int(probs.argmax())


def test_device_choice():
    assert default_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA GPU"):
            default_device("cuda")
        assert default_device().type in ("cpu", "mps")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_uses_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), blob_dls(), device="cuda")
    assert learn.amp_dtype in (torch.bfloat16, torch.float16)
    w = learn.model.body[0][0].weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    before = learn.validate()["valid_loss"]
    learn.fit_one_cycle(3, 1e-2)
    assert learn.history[-1]["valid_loss"] < before


def test_a_model_without_groups_trains_and_cannot_freeze():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    learn = Learner(model, blob_dls(), device="cpu")
    assert learn.n_groups == 1
    learn.fit_one_cycle(1, 1e-2)
    with pytest.raises(TrainingError):
        learn.freeze()


# ------------------------------------------------------------------------------- real digits


def test_a_short_cpu_run_on_the_digits_lowers_the_loss(tmp_path):
    from engine.data import DataConfig, build_dataloaders, digits_folder

    dls = build_dataloaders(digits_folder(tmp_path / "digits"),
                            DataConfig(size=16, bs=64, flip=False), device="cpu")
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", len(dls.classes), pretrained=False), dls,
                    device="cpu", seed=0)
    before = learn.validate()
    learn.fit_settings(RunSettings(epochs=2, lr=1e-2))
    after = learn.history[-1]
    assert after["valid_loss"] < before["valid_loss"] / 2
    assert after["accuracy"] > 0.8
    assert learn.batch_log[-1]["smooth_loss"] < learn.batch_log[0]["smooth_loss"]
