"""engine.coach: each lesson rule fires on the curve it describes and stays quiet otherwise."""
from __future__ import annotations

import math

from engine.coach import diagnose, lr_too_high, lr_too_low, too_many_epochs, train_below_valid


def rows(train, valid, err):
    return [{"epoch": i, "train_loss": t, "valid_loss": v, "error_rate": e}
            for i, (t, v, e) in enumerate(zip(train, valid, err))]


def kinds(notes):
    return [n.kind for n in notes]


def test_exploding_valid_loss_means_lr_too_high():
    r = rows([0.9, 1.5, 3.0], [0.8, 2.5, 9.0], [0.3, 0.5, 0.8])
    note = lr_too_high(r)
    assert note and "lower learning rate" in note.text
    assert kinds(diagnose(r))[0] == "lr_too_high" and "lr_too_low" not in kinds(diagnose(r))


def test_nan_loss_and_diverging_batches_mean_lr_too_high():
    assert lr_too_high(rows([1.0], [math.nan], [0.9])).kind == "lr_too_high"
    batches = [{"smooth_loss": 1.0 - 0.01 * i} for i in range(20)] + [{"smooth_loss": 50.0}]
    assert lr_too_high(rows([1.0], [0.9], [0.2]), batches) is not None


def test_slow_fall_with_train_above_valid_means_lr_too_low():
    r = rows([2.30, 2.25, 2.21], [2.28, 2.22, 2.18], [0.80, 0.78, 0.76])
    note = lr_too_low(r)
    assert note and "more epochs" in note.text and "larger learning rate" in note.text
    assert "lr_too_low" in kinds(diagnose(r))
    # One epoch with train above valid: the same advice.
    assert lr_too_low(rows([1.2], [0.9], [0.3])) is not None


def test_fast_fall_that_levelled_off_is_not_too_low():
    r = rows([0.9, 0.3, 0.2], [0.8, 0.25, 0.26], [0.2, 0.06, 0.06])
    assert lr_too_low(r) is None


def test_error_rising_again_means_too_many_epochs():
    r = rows([0.8, 0.4, 0.2, 0.1, 0.05], [0.6, 0.3, 0.25, 0.3, 0.4], [0.2, 0.08, 0.05, 0.07, 0.09])
    note = too_many_epochs(r)
    assert note and "epoch 2" in note.text and "about 3 epochs" in note.text
    assert "too_many_epochs" in kinds(diagnose(r))


def test_noise_in_error_rate_is_not_overfitting():
    r = rows([0.5, 0.3, 0.2], [0.4, 0.3, 0.28], [0.100, 0.080, 0.082])
    assert too_many_epochs(r) is None


def test_train_below_valid_is_normal_and_healthy():
    r = rows([0.5, 0.2, 0.1], [0.45, 0.3, 0.2], [0.1, 0.06, 0.04])
    note = train_below_valid(r)
    assert note and "not overfitting" in note.text
    assert kinds(diagnose(r)) == ["healthy", "train_below_valid"]


def test_empty_and_cancelled():
    assert kinds(diagnose([])) == ["no_epochs"]
    r = rows([0.5, 0.2], [0.45, 0.3], [0.1, 0.06])
    assert kinds(diagnose(r, cancelled=True))[-1] == "cancelled"
