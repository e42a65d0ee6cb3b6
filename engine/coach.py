"""The coach: a short diagnosis of a training run from its curves, in the lesson's terms.

Each rule is a small pure function of the epoch table (and the per-batch losses): it returns a
`Note` or None. `diagnose` runs them in order. The rules, as the lesson states them:

  - validation loss explodes (NaN, or far above its best)   -> learning rate too high; start again lower
  - loss falls very slowly and train loss > valid loss      -> learning rate too low, or too few epochs
  - error rate rises again in the last epochs               -> too many epochs (overfitting)
  - train loss < valid loss                                 -> normal; not overfitting by itself

An epoch without a validation measurement (no validation images: every validation figure NaN) is
no evidence for any of the validation rules: `diagnose` says the set is empty instead of reading
its NaNs as an explosion. `validation_note` says the same before training, from the split's counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# Thresholds, each with its reason.
EXPLODE_FACTOR = 2.0      # valid loss at the end above twice its best: the run went unstable
DIVERGE_FACTOR = 4.0      # smoothed batch loss above 4x its best: what stops the LR finder too
SLOW_DROP = 0.25          # valid loss fell by less than a quarter from the first epoch to the last
RISE_ABS = 0.005          # error rate up by at least half a percentage point from its best ...
RISE_REL = 0.10           # ... and by at least a tenth of its best, to ignore noise on tiny sets


@dataclass(frozen=True)
class Note:
    """One finding: `kind` names the rule, `level` is "error" | "warning" | "info" | "success"."""

    kind: str
    level: str
    title: str
    text: str


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _col(epochs: Sequence[dict], key: str) -> list[float]:
    return [float(e[key]) if e.get(key) is not None else math.nan for e in epochs]


def measured(epoch: dict) -> bool:
    """Whether an epoch row holds a validation measurement. evaluate() returns NaN for the error
    rate only when there was no validation image; a real explosion gives a NaN loss and a number
    for the error rate (argmax of anything is some class)."""
    err = epoch.get("error_rate")
    return isinstance(err, (int, float)) and math.isfinite(err)


def no_validation(epochs: Sequence[dict], batches: Sequence[dict] = ()) -> Note | None:
    """No epoch was measured on validation images: the set was empty."""
    if not epochs or any(measured(e) for e in epochs):
        return None
    return Note("no_validation", "warning", "No validation set, so nothing to judge",
                "This run had no validation images (each class needs at least two images so "
                "that one can be held out), so its validation loss and error rate are empty and "
                "the coach cannot tell whether the learning rate or the number of epochs was "
                "right. Add images so that every class has at least two (or add a valid/ folder "
                "of class folders), and train again.")


def validation_note(classes: Sequence[str], valid_counts: Sequence[int]) -> Note | None:
    """Before training: a warning when the split leaves no validation image at all, an info note
    naming the classes that have none; None when every class has some."""
    if not classes:
        return None
    empty = [c for c, n in zip(classes, valid_counts) if int(n) == 0]
    if len(empty) == len(classes):
        return Note("no_validation", "warning", "The validation set is empty",
                    "No image is held out for validation: a class needs at least two images so "
                    "that one can be held out. Without validation images, training cannot measure "
                    "the error rate and the coach cannot judge the run. Add images to every "
                    "class (or a valid/ folder of class folders), then train.")
    if empty:
        names = ", ".join(f"“{c}”" for c in empty[:5]) + (f" and {len(empty) - 5} more"
                                                         if len(empty) > 5 else "")
        return Note("class_without_validation", "info", "Some classes have no validation image",
                    f"{names} {'has' if len(empty) == 1 else 'have'} no validation image, so the "
                    "error rate says nothing about "
                    f"{'it' if len(empty) == 1 else 'them'}: add at least one more image to "
                    f"{'that class' if len(empty) == 1 else 'each of them'}.")
    return None


def lr_too_high(epochs: Sequence[dict], batches: Sequence[dict] = ()) -> Note | None:
    """Validation (or training) loss exploded. Epochs without a validation measurement are left
    out: their NaN is an empty set, not an explosion."""
    valid = _col([e for e in epochs if measured(e)], "valid_loss")
    smooth = [float(b["smooth_loss"]) for b in batches if b.get("smooth_loss") is not None]
    bad_valid = any(not math.isfinite(v) for v in valid)
    finite = [v for v in valid if math.isfinite(v)]
    blew_up = len(finite) >= 2 and finite[-1] > EXPLODE_FACTOR * min(finite)
    diverged = bool(smooth) and (any(not math.isfinite(s) for s in smooth)
                                 or (len(smooth) > 10 and smooth[-1] > DIVERGE_FACTOR * min(smooth)))
    if not (bad_valid or blew_up or diverged):
        return None
    what = "became NaN (not a number)" if bad_valid else \
        f"ended at {finite[-1]:.3g}, more than {EXPLODE_FACTOR:g}× its best {min(finite):.3g}" \
        if blew_up else "shot up during training"
    return Note("lr_too_high", "error", "Learning rate too high",
                f"The loss {what}: the steps were so large that they overshot and the weights "
                "were thrown far from anything useful. Start again from a fresh model with a lower "
                "learning rate — a tenth of this one, or the LR finder's valley suggestion.")


def lr_too_low(epochs: Sequence[dict], batches: Sequence[dict] = ()) -> Note | None:
    """Loss crawls down and the model still does worse on training data than on validation."""
    epochs = [e for e in epochs if measured(e)]
    if not epochs:
        return None
    valid, train = _col(epochs, "valid_loss"), _col(epochs, "train_loss")
    if not (_finite(valid[-1]) and _finite(train[-1])) or train[-1] <= valid[-1]:
        return None
    if len(valid) >= 2 and _finite(valid[0]) and valid[0] > 0:
        drop = (valid[0] - valid[-1]) / valid[0]
        still_falling = valid[-1] < valid[-2]
        if drop >= SLOW_DROP and not still_falling:
            return None
        how = f"fell only {max(drop, 0):.0%} from the first epoch to the last" \
            if drop < SLOW_DROP else "was still falling at the last epoch"
    else:
        how = "is still high after a single epoch"
    return Note("lr_too_low", "warning", "Learning rate too low, or too few epochs",
                f"The validation loss {how}, and the training loss ({train[-1]:.3g}) is still above "
                f"the validation loss ({valid[-1]:.3g}): the model has not yet fitted even the "
                "images it trains on. Train for more epochs, or pick a larger learning rate "
                "(check the LR finder's curve).")


def too_many_epochs(epochs: Sequence[dict], batches: Sequence[dict] = ()) -> Note | None:
    """The error rate went back up in the last epochs after its best."""
    err = _col(epochs, "error_rate")
    finite = [(i, e) for i, e in enumerate(err) if math.isfinite(e)]
    if len(finite) < 3:
        return None
    best_i, best = min(finite, key=lambda ie: (ie[1], ie[0]))
    last_i, last = finite[-1]
    if best_i == last_i or last - best < max(RISE_ABS, RISE_REL * best):
        return None
    return Note("too_many_epochs", "warning", "Too many epochs: overfitting",
                f"The error rate was lowest ({best:.2%}) after epoch {best_i} and rose again to "
                f"{last:.2%} by epoch {last_i}: the model started memorising the training images "
                f"instead of learning what generalises. Train again from the start with about "
                f"{best_i + 1} epochs (the learning rate then decays in time).")


def train_below_valid(epochs: Sequence[dict], batches: Sequence[dict] = ()) -> Note | None:
    """Train loss under valid loss: normal, not overfitting."""
    epochs = [e for e in epochs if measured(e)]
    if not epochs:
        return None
    t, v = epochs[-1].get("train_loss"), epochs[-1].get("valid_loss")
    if not (_finite(t) and _finite(v)) or t >= v:
        return None
    return Note("train_below_valid", "info", "Training loss below validation loss is normal",
                f"Training loss {t:.3g} < validation loss {v:.3g}. A model always does a bit better "
                "on the images it learned from; that alone is not overfitting. Overfitting is when "
                "the error rate on the validation set gets worse.")


RULES: tuple[Callable[..., Note | None], ...] = (lr_too_high, too_many_epochs, lr_too_low,
                                                  train_below_valid)


def diagnose(epochs: Sequence[dict], batches: Sequence[dict] = (), *,
             cancelled: bool = False) -> list[Note]:
    """Every rule's finding for a run's epoch rows (epoch, train_loss, valid_loss, error_rate) and
    per-batch records (smooth_loss); a healthy run gets one "success" note."""
    if not epochs:
        return [Note("no_epochs", "info", "No finished epoch yet",
                     "The run stopped before its first epoch ended, so there is nothing to judge; "
                     "the model was left as it was.")]
    notes = [n for n in (rule(epochs, batches) for rule in RULES) if n is not None]
    empty = no_validation(epochs, batches)
    if empty is not None:
        # Only what the training loss shows can still be said (a diverging batch loss).
        notes = [empty] + [n for n in notes if n.kind == "lr_too_high"]
    if notes and notes[0].kind == "lr_too_high":
        notes = [n for n in notes if n.kind != "lr_too_low"]   # both would confuse; the first wins
    if not any(n.level in ("error", "warning") for n in notes):
        err = epochs[-1].get("error_rate")
        where = f" with an error rate of {err:.2%}" if _finite(err) else ""
        notes.insert(0, Note("healthy", "success", "Looks healthy",
                             f"Both losses went down and the error rate did not rise again{where}. "
                             "To improve further: more epochs, or fine-tune a pretrained model."))
    if cancelled:
        notes.append(Note("cancelled", "info", "Cancelled",
                          "The run was cancelled; the model kept is the one after its last finished "
                          "epoch."))
    return notes


__all__ = ["Note", "diagnose", "lr_too_high", "lr_too_low", "too_many_epochs", "train_below_valid",
           "RULES", "measured", "no_validation", "validation_note"]
