"""Issue 16's sharper coach, its inputs (settings, the LR finder's curve, the fit check) and the
small engine pieces around it: experiments, regularisation settings, runs side by side."""
from __future__ import annotations

import math

import pytest

from engine.coach import (PRIMARY_KINDS, diagnose, lr_too_high, loss_drop, too_few_epochs,
                          underfit, underfit_cause)


def rows(train, valid, err):
    return [{"epoch": i, "train_loss": t, "valid_loss": v, "error_rate": e}
            for i, (t, v, e) in enumerate(zip(train, valid, err))]


def kinds(notes):
    return [n.kind for n in notes]


def batches(losses):
    """Per-batch records with a debiased EMA as engine.training keeps it."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = 0.98 * avg + 0.02 * loss
        out.append({"loss": loss, "smooth_loss": avg / (1 - 0.98 ** i)})
    return out


#: The default digits flow's shape (augmentation and head dropout on): the training loss stays
#: above the validation loss, and the validation loss still ticks down at the last epoch.
DEFAULT_FLOW = rows([1.75, 0.99, 0.75, 0.55, 0.44, 0.34, 0.25, 0.19, 0.144, 0.109],
                    [0.37, 0.88, 0.16, 0.22, 0.21, 0.042, 0.017, 0.043, 0.0182, 0.0179],
                    [0.106, 0.123, 0.033, 0.064, 0.053, 0.022, 0.008, 0.011, 0.008, 0.008])
FALLING = batches([3.4 * 0.985 ** i for i in range(220)])
FINDER = {"lrs": [10 ** (-7 + 8 * i / 99) for i in range(100)],
          "losses": [2.4 - 2.0 * (1 / (1 + math.exp(-(i - 55) / 6))) + (0 if i < 85 else (i - 85) ** 2)
                     for i in range(100)],
          "suggestions": {"valley": 4e-3, "steep": 2e-3, "minimum": 4e-2, "slide": 1.7e-3}}
DIGITS = {"augment": True, "ps": 0.5, "lr": 4.37e-3, "method": "fit_one_cycle"}


def test_augmentation_and_dropout_are_not_mistaken_for_under_training():
    """The old reading ("train loss above valid loss and still falling: lr too low or too few
    epochs") of a 99 % model is gone once the coach knows the run was regularised."""
    # Knowing nothing of the settings, the lesson's rule reads the gap as under-training.
    assert diagnose(DEFAULT_FLOW).kind == "too_few_epochs"
    found = diagnose(DEFAULT_FLOW, FALLING, settings=DIGITS)
    assert found.kind == "healthy" and "train_above_valid" in kinds(found.secondary)
    note = found.secondary[kinds(found.secondary).index("train_above_valid")]
    assert "augmentation and dropout" in note.text
    fit = {"train_loss": 0.003, "train_error": 0.002, "n": 500}
    found = diagnose(DEFAULT_FLOW, FALLING, settings=DIGITS, lr_find=FINDER, fit=fit)
    assert found.kind == "healthy" and "0.003" in found.secondary[0].text


@pytest.mark.parametrize("augment, ps, explained", [(True, 0.5, True), (False, 0.5, True),
                                                   (True, 0.0, True), (False, 0.0, False)])
def test_only_an_unregularised_run_reads_train_above_valid_as_underfitting(augment, ps, explained):
    settings = {"augment": augment, "ps": ps, "lr": 1e-2}
    assert (underfit(DEFAULT_FLOW, settings=settings) is None) == explained


def test_the_fit_check_decides_underfitting():
    fit_bad = {"train_loss": 0.18, "train_error": 0.066}
    one = rows([1.26], [0.29], [0.092])
    assert underfit(one, settings=DIGITS, fit=fit_bad)
    assert "6.6%" in underfit(one, settings=DIGITS, fit=fit_bad)
    assert underfit(one, settings=DIGITS, fit={"train_loss": 0.03, "train_error": 0.014}) is None
    # Never underfit with a perfect fit, however the logged losses look.
    slow = rows([2.30, 2.25, 2.21], [2.28, 2.22, 2.18], [0.80, 0.78, 0.76])
    assert underfit(slow, fit={"train_loss": 0.0, "train_error": 0.0}) is None


def test_lr_too_low_and_too_few_epochs_are_told_apart():
    fit = {"train_loss": 0.2, "train_error": 0.07}
    one = rows([1.26], [0.29], [0.092])
    # With the LR finder: a rate far below its valley is the rate; one near it is the length.
    low = diagnose(one, settings={**DIGITS, "lr": 1e-5}, lr_find=FINDER, fit=fit)
    assert low.kind == "lr_too_low" and "400× below" in low.primary.text
    few = diagnose(one, settings={**DIGITS, "lr": 1e-2}, lr_find=FINDER, fit=fit)
    assert few.kind == "too_few_epochs" and "more epochs" in few.primary.text
    # Without it: a loss that barely moved is the rate, one that fell a lot the length.
    flat = batches([3.7 - 0.001 * i for i in range(66)])
    assert loss_drop(flat) < 0.25 and loss_drop(FALLING) > 0.9
    assert diagnose(one, flat, settings={**DIGITS, "lr": 1e-5}, fit=fit).kind == "lr_too_low"
    assert diagnose(one, FALLING, settings=DIGITS, fit=fit).kind == "too_few_epochs"
    assert underfit_cause(one)[0] is None                         # nothing to tell them apart
    assert lr_too_high(one, FALLING, settings=DIGITS, fit=fit) is None


def test_a_loss_that_shoots_up_is_a_learning_rate_too_high():
    shot = batches([3.6] * 5 + [40.0] * 30 + [20.0] * 31)
    r = rows([62.7, 74.8, 62.7], [22649.4, 2970.5, 24.9], [0.80, 0.66, 0.11])
    found = diagnose(r, shot, settings={**DIGITS, "lr": 1.0}, lr_find=FINDER)
    assert found.kind == "lr_too_high" and "shot up" in found.primary.text
    assert not {"lr_too_low", "too_few_epochs", "train_above_valid"} & set(kinds(found))
    # Continuing a trained model starts from a small loss: a re-warming bump is not an explosion.
    bump = batches([0.05] * 5 + [0.12] * 10 + [0.04] * 40)
    calm = rows([0.1, 0.06], [0.05, 0.04], [0.01, 0.01])
    assert lr_too_high(calm, bump, settings={"method": "unfreeze"}) is None
    # Past the bottom of the finder's curve and not learning: too high, too.
    stuck = {"train_loss": 2.0, "train_error": 0.8}
    found = diagnose(rows([2.3], [2.2], [0.8]), settings={**DIGITS, "lr": 5.0}, lr_find=FINDER,
                     fit=stuck)
    assert found.kind == "lr_too_high" and "past the bottom" in found.primary.text


CASES = [
    (DEFAULT_FLOW, FALLING, DIGITS, None, None),
    (rows([1.26], [0.29], [0.092]), FALLING, DIGITS, FINDER, {"train_error": 0.07}),
    (rows([0.8, 0.4, 0.2, 0.1, 0.05], [0.6, 0.3, 0.25, 0.3, 0.4], [0.2, 0.08, 0.05, 0.07, 0.09]),
     (), None, None, None),
    (rows([0.9, 1.5, 3.0], [0.8, 2.5, 9.0], [0.3, 0.5, 0.8]), (), None, None, None),
    (rows([2.30, 2.25, 2.21], [2.28, 2.22, 2.18], [0.80, 0.78, 0.76]), (), None, None, None),
    (rows([1.2], [0.9], [0.3]), (), None, None, None),
]


@pytest.mark.parametrize("epochs, batch, settings, finder, fit", CASES)
def test_exactly_one_primary_finding(epochs, batch, settings, finder, fit):
    found = diagnose(epochs, batch, settings=settings, lr_find=finder, fit=fit, cancelled=True)
    assert found.kind in PRIMARY_KINDS and found.primary is found[0]
    assert sum(n.kind in PRIMARY_KINDS and n.level != "info" for n in found) == 1
    assert all(n.level == "info" for n in found.secondary)
    assert found.secondary[-1].kind == "cancelled"


def test_memorising_is_a_secondary_note():
    r = rows([0.4, 0.2, 0.1], [0.5, 0.4, 0.38], [0.12, 0.09, 0.08])
    found = diagnose(r, settings={"augment": False, "ps": 0.0}, fit={"train_error": 0.0})
    assert found.kind == "healthy" and "memorised" in kinds(found.secondary)
    assert too_few_epochs(r, fit={"train_error": 0.0}) is None


# ------------------------------------------------------------------ settings, model, experiments


def test_regularisation_settings_have_fastais_defaults_and_rules():
    from engine.settings import FIELD_RULES, RunSettings

    s = RunSettings()
    assert s.wd == 0.01 and s.ps == 0.5
    assert RunSettings.from_dict(s.with_(wd=0.0, ps=0.25, valid_pct=0.9).to_dict()).ps == 0.25
    FIELD_RULES["valid_pct"].check("valid_pct", 0.9)
    FIELD_RULES["ps"].check("ps", 0.0)
    for name, bad in (("valid_pct", 0.95), ("ps", 1.0), ("wd", -0.1), ("wd", math.inf)):
        with pytest.raises(ValueError):
            FIELD_RULES[name].check(name, bad)


def test_ps_reaches_the_heads_dropout():
    from torch import nn

    from engine.models import create_model, make_head, set_head_dropout

    def drops(model):
        return [m.p for m in model.head if isinstance(m, nn.Dropout)]

    assert drops(create_model("simple_cnn", 3, pretrained=False)) == [0.25, 0.5]
    model = create_model("simple_cnn", 3, pretrained=False, ps=0.2)
    assert drops(model) == pytest.approx([0.1, 0.2])
    set_head_dropout(model, 0.0)
    assert drops(model) == [0.0, 0.0]
    assert [m.p for m in make_head(8, 2, p=0.4) if isinstance(m, nn.Dropout)] == [0.2, 0.4]


def test_experiments_are_overrides_of_the_current_settings():
    from engine.errors import TrainingError
    from engine.experiments import (EXPERIMENT_INFO, EXPERIMENTS, apply_experiment, describe)
    from engine.settings import settings_for

    assert list(EXPERIMENTS) == ["lr_too_high", "lr_too_low", "too_few_epochs", "too_many_epochs"]
    assert set(EXPERIMENTS) <= set(PRIMARY_KINDS)
    base = settings_for("digits", seed=7, size=28)
    s = apply_experiment(base, "too_many_epochs")
    assert (s.valid_pct, s.wd, s.ps, s.augment, s.seed, s.size) == (0.9, 0.0, 0.0, False, 7, 28)
    assert apply_experiment(base, "lr_too_low").lr == 1e-5
    assert all(EXPERIMENT_INFO[n].symptom for n in EXPERIMENTS)
    assert describe({"lr": 1e-5, "augment": False}) == "lr=1e-05, augment=False"
    with pytest.raises(TrainingError, match="lr_too_high, lr_too_low"):
        apply_experiment(base, "nope")


def test_runs_side_by_side_show_only_what_differs():
    from engine.compare import check_count, differing_settings, epoch_curves

    a = {"arch": "simple_cnn", "lr": 0.01, "wd": 0.01, "folder": "/x", "augment": True}
    b = {"arch": "simple_cnn", "lr": 1e-5, "wd": 0.01, "folder": "/y", "augment": True}
    c = {"arch": "simple_cnn", "lr": 0.01, "wd": 0.01, "folder": "/z"}
    assert differing_settings([a, b]) == {"lr": ["0.01", "1e-05"]}
    assert differing_settings([a, c]) == {"augment": ["True", "—"]}
    curves = epoch_curves({"epochs": [{"train_loss": 1.0, "valid_loss": 0.5, "error_rate": 0.1},
                                      {"train_loss": 0.5, "valid_loss": None, "error_rate": 0.05}]})
    assert curves["epoch"] == [1.0, 2.0] and math.isnan(curves["valid_loss"][1])
    assert check_count(1) and check_count(5) and check_count(2) is None and check_count(4) is None
