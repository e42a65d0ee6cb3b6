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


# Issue 18, defect 5: an empty validation set ----------------------------------------------------

import pytest  # noqa: E402

from engine.coach import measured, no_validation, validation_note  # noqa: E402

NAN = math.nan


def unmeasured(train, value=NAN):
    """Epoch rows as a run without validation images records them: NaN (or None, as read back
    from JSON) for every validation figure."""
    return [{"epoch": i, "train_loss": t, "valid_loss": value, "error_rate": value,
             "accuracy": value} for i, t in enumerate(train)]


@pytest.mark.parametrize("train", [[0.9], [0.9, 0.5, 0.3], [0.3, 0.5, 0.9], [2.3, 2.29, 2.28],
                                   [0.5, 0.5, 0.5, 0.5, 0.5]], ids=str)
@pytest.mark.parametrize("value", [NAN, None], ids=["nan", "none"])
def test_an_empty_validation_set_is_said_and_never_diagnosed(train, value):
    """Whatever the training loss did, NaN (or missing) validation figures from an empty set give
    one warning that the set is empty: never "learning rate too high" (the old reading of NaN),
    never "too low", "healthy" or "train below valid"."""
    notes = diagnose(unmeasured(train, value))
    assert kinds(notes) == ["no_validation"]
    assert notes[0].level == "warning" and "no validation images" in notes[0].text
    assert "at least two" in notes[0].text
    assert lr_too_high(unmeasured(train, value)) is None
    assert lr_too_low(unmeasured(train, value)) is None
    assert train_below_valid(unmeasured(train, value)) is None
    assert too_many_epochs(unmeasured(train, value)) is None


def test_without_validation_a_diverging_training_loss_is_still_reported():
    batches = [{"smooth_loss": 1.0 - 0.01 * i} for i in range(20)] + [{"smooth_loss": 50.0}]
    assert kinds(diagnose(unmeasured([1.0, 5.0]), batches)) == ["no_validation", "lr_too_high"]
    nan_batches = [{"smooth_loss": 1.0}, {"smooth_loss": NAN}]
    notes = diagnose(unmeasured([1.0]), nan_batches, cancelled=True)
    assert kinds(notes) == ["no_validation", "lr_too_high", "cancelled"]
    assert "shot up during training" in notes[1].text


@pytest.mark.parametrize("err", [0.9, 0.5, 0.0, 1.0])
def test_a_nan_loss_with_a_measured_error_rate_is_still_an_explosion(err):
    """A real explosion: the loss is NaN or infinite but there were images, so the error rate is
    a number. That stays "learning rate too high"."""
    for bad in (NAN, math.inf):
        r = rows([1.0, 2.0], [0.8, bad], [0.3, err])
        assert kinds(diagnose(r))[0] == "lr_too_high"
        assert all(measured(e) for e in r)


def test_measured_tells_an_empty_set_from_a_number():
    assert measured({"error_rate": 0.0}) and measured({"error_rate": 1}) and not measured({})
    assert not any(measured({"error_rate": v}) for v in (NAN, None, math.inf, "0.1"))
    assert no_validation([]) is None and no_validation(rows([1.0], [1.0], [0.5])) is None


@pytest.mark.parametrize("classes, valid, level, words", [
    (["a", "b"], [0, 0], "warning", "No image is held out"),
    (["cat", "dog", "fox"], [0, 0, 0], "warning", "at least two images"),
    (["cat", "dog"], [0, 3], "info", "“cat” has no validation image"),
    (["a", "b", "c"], [0, 2, 0], "info", "“a”, “c” have no validation image"),
    ([str(i) for i in range(9)], [0] * 8 + [1], "info", "and 3 more"),
])
def test_before_training_an_empty_validation_set_is_announced(classes, valid, level, words):
    note = validation_note(classes, valid)
    assert note is not None and note.level == level and words in note.text


def test_a_validation_set_with_every_class_needs_no_note():
    assert validation_note(["a", "b"], [1, 4]) is None
    assert validation_note([], []) is None


def test_one_image_per_class_trains_and_the_coach_says_the_set_was_empty(tmp_path):
    """The whole path: a set of one image per class splits into no validation image (counted from
    the listing before training), trains with NaN validation figures, and the coach says so."""
    import numpy as np
    from PIL import Image

    from engine.data import DataConfig, build_dataloaders
    from engine.data.summary import class_counts
    from engine.models import create_model
    from engine.training import Learner

    for k, cls in enumerate(("red", "green", "blue")):
        (tmp_path / cls).mkdir()
        img = np.zeros((12, 12, 3), np.uint8)
        img[..., k] = 255
        Image.fromarray(img).save(tmp_path / cls / "only.png")
    counts = class_counts(tmp_path)
    assert counts["valid"] == [0, 0, 0] and counts["train"] == [1, 1, 1]
    assert validation_note(counts["classes"], counts["valid"]).kind == "no_validation"
    dls = build_dataloaders(tmp_path, DataConfig(size=16, bs=2, augment=False, flip=False))
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), dls, device="cpu", seed=0)
    learn.fit_one_cycle(2, 1e-3)
    assert all(math.isnan(e["valid_loss"]) and math.isnan(e["error_rate"])
               for e in learn.history)
    assert kinds(diagnose(learn.history)) == ["no_validation"]
