"""The coach: one diagnosis of a training run from its curves, in the lesson's terms.

`diagnose` names exactly one primary finding, whose kind is one of PRIMARY_KINDS (lr_too_high,
lr_too_low, too_few_epochs, too_many_epochs, healthy), followed by secondary notes (level "info").
Each rule is a small pure function of the epoch table, the per-batch losses and what else the run
recorded: its settings (augmentation, dropout, learning rate), the LR finder's curve when it had
one, and `fit`, its training images measured as the validation images are (engine.fit_check).
The rules, as the lesson states them:

  - the loss explodes (NaN, far above its best, or far above where it started)
                                          -> learning rate too high; start again lower
  - the model has not learned even its training images (underfitting), and
      its rate is far below the LR finder's valley, or the loss barely moved -> learning rate too low
      otherwise (the loss fell well, training stopped while it still fell)   -> too few epochs
  - error rate rises again after its best -> too many epochs (overfitting)
  - train loss < valid loss               -> normal; not overfitting by itself

"Train loss > valid loss" is the lesson's sign of underfitting only without augmentation and
dropout: both make the logged training loss higher than the validation loss of a model that fits
its training images perfectly. So the coach judges underfitting from `fit` when it is there, and
reads the logged losses only when nothing else explains the gap.

An epoch without a validation measurement (no validation images: every validation figure NaN) is
no evidence for any of the validation rules: `diagnose` says the set is empty instead of reading
its NaNs as an explosion. `validation_note` says the same before training, from the split's counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

# Thresholds, each with its reason.
EXPLODE_FACTOR = 2.0      # valid loss at the end above twice its best: the run went unstable
DIVERGE_FACTOR = 4.0      # smoothed batch loss above 4x its best: what stops the LR finder too
SLOW_DROP = 0.25          # valid loss fell by less than a quarter from the first epoch to the last
RISE_ABS = 0.005          # error rate up by at least half a percentage point from its best ...
RISE_REL = 0.10           # ... and by at least a tenth of its best, to ignore noise on tiny sets
SHOT_UP = 2.0             # smoothed batch loss above twice where it started: a run that learns starts
                          # at its highest loss, so climbing to double it means the steps overshot
UNDERFIT_SHARE = 0.5      # still missing at least half as many training images as validation ones ...
UNDERFIT_ABS = 0.02       # ... and at least 2 % of them: the model has not learned them yet
LOW_FACTOR = 10.0         # a rate ten times below the finder's valley, where its loss barely moved
MEMORISED = 0.1           # training error under a tenth of the validation error (and the latter at
                          # least UNDERFIT_ABS): learned by heart far better than it generalises
#: The kinds a primary finding can have when there is something to judge. (Without a finished
#: epoch, or without validation images, the primary note says so instead: no_epochs, no_validation.)
PRIMARY_KINDS = ("lr_too_high", "lr_too_low", "too_few_epochs", "too_many_epochs", "healthy")


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


# ------------------------------------------------------------------------------- what a run holds


def _get(settings: Any, name: str, default: Any) -> Any:
    """A setting from RunSettings or a saved run's settings dict; default when unknown."""
    if settings is None:
        return default
    value = settings.get(name) if isinstance(settings, Mapping) else getattr(settings, name, None)
    return default if value is None else value


def regularised(settings: Any) -> list[str]:
    """What makes the logged training loss higher than a clean measurement: augmentation and
    dropout (a saved run from before `ps` existed had the head's default dropout, 0.5)."""
    if settings is None:
        return []
    out = ["augmentation"] if _get(settings, "augment", True) else []
    return out + (["dropout"] if float(_get(settings, "ps", 0.5)) > 0 else [])


def _losses(batches: Sequence[dict]) -> list[float]:
    """Per-batch training losses (raw when recorded, else smoothed), finite ones only."""
    key = "loss" if any(b.get("loss") is not None for b in batches) else "smooth_loss"
    return [float(b[key]) for b in batches if _finite(b.get(key))]


def loss_drop(batches: Sequence[dict]) -> float | None:
    """How much of its starting value the training loss lost from the first batches to the last
    (a few batches at each end, averaged: single batches are noisy); None without batches."""
    losses = _losses(batches)
    if len(losses) < 4:
        return None
    w = max(1, min(5, len(losses) // 10))
    start, end = sum(losses[:w]) / w, sum(losses[-w:]) / w
    return 1 - end / start if start > 0 else None


def finder_points(lr_find: Mapping | None) -> tuple[float, float] | None:
    """(valley suggestion, lr at the finder's lowest loss) from an LR-finder record, or None."""
    if not lr_find or not lr_find.get("lrs"):
        return None
    pairs = [(float(lr), float(loss)) for lr, loss in zip(lr_find["lrs"], lr_find.get("losses") or [])
             if _finite(lr) and _finite(loss)]
    valley = (lr_find.get("suggestions") or {}).get("valley")
    if not pairs or not _finite(valley):
        return None
    return float(valley), min(pairs, key=lambda p: p[1])[0]


def underfit(epochs: Sequence[dict], batches: Sequence[dict] = (), *, settings: Any = None,
             fit: Mapping | None = None) -> str | None:
    """Why the model has not yet learned its own training images, as a clause; None if it has.

    With `fit` (training images measured like validation images) that measurement decides. Else
    a training loss that barely moved, or (when neither augmentation nor dropout explains it) a
    logged training loss above the validation loss of a run that was still improving."""
    epochs = [e for e in epochs if measured(e)]
    if not epochs:
        return None
    err = float(epochs[-1]["error_rate"])
    if fit and _finite(fit.get("train_error")):
        train_err = float(fit["train_error"])
        if train_err >= max(UNDERFIT_SHARE * err, UNDERFIT_ABS):
            return (f"measured without augmentation or dropout, it still gets {train_err:.1%} of "
                    f"its own training images wrong (and {err:.1%} of the validation images)")
        return None
    drop = loss_drop(batches)
    if drop is not None and drop < SLOW_DROP:
        return (f"the training loss fell only {drop:.0%} from the first batches to the last"
                if drop >= 0.005 else "the training loss did not fall from the first batches to "
                "the last")
    if regularised(settings):
        return None
    valid, train = _col(epochs, "valid_loss"), _col(epochs, "train_loss")
    if not (_finite(valid[-1]) and _finite(train[-1])) or train[-1] <= valid[-1]:
        return None
    if len(valid) >= 2 and _finite(valid[0]) and valid[0] > 0:
        fell = (valid[0] - valid[-1]) / valid[0]
        if fell >= SLOW_DROP and not valid[-1] < valid[-2]:
            return None
        how = f"fell only {max(fell, 0):.0%} from the first epoch to the last" \
            if fell < SLOW_DROP else "was still falling at the last epoch"
    else:
        how = "is still high after a single epoch"
    return (f"the validation loss {how}, and the training loss ({train[-1]:.3g}) is still above the "
            f"validation loss ({valid[-1]:.3g})")


def underfit_cause(epochs: Sequence[dict], batches: Sequence[dict] = (), *, settings: Any = None,
                   lr_find: Mapping | None = None) -> tuple[str | None, str]:
    """("lr" | "epochs" | None, the evidence) for an underfit run: the LR finder's valley when the
    run has one, else how far the loss fell (a rate too low barely moves it; too few epochs of a
    good rate move it a lot and stop while it still falls). None: nothing tells them apart."""
    lr, found = _get(settings, "lr", None), finder_points(lr_find)
    if found is not None and _finite(lr) and lr > 0:
        valley = found[0]
        if lr < valley / LOW_FACTOR:
            return "lr", (f"this run's learning rate {lr:.2g} is {valley / lr:.0f}× below the LR "
                          f"finder's valley ({valley:.2g}), where the finder's loss had hardly "
                          "started to fall")
        return "epochs", (f"the learning rate {lr:.2g} is in the range the LR finder suggests "
                          f"(valley {valley:.2g})")
    drop = loss_drop(batches)
    if drop is None:
        valid = _col([e for e in epochs if measured(e)], "valid_loss")
        if len(valid) >= 2 and _finite(valid[0]) and valid[0] > 0 and _finite(valid[-1]):
            drop = (valid[0] - valid[-1]) / valid[0]
    if drop is None:
        return None, ""
    if drop < SLOW_DROP:
        return "lr", (f"the loss fell only {drop:.0%} over the whole run" if drop >= 0.005 else
                      "the loss did not fall over the whole run")
    return "epochs", f"the training loss fell {drop:.0%} over the run and was still falling"


# ------------------------------------------------------------------------------------ the rules


def lr_too_high(epochs: Sequence[dict], batches: Sequence[dict] = (), *, settings: Any = None,
                lr_find: Mapping | None = None, fit: Mapping | None = None) -> Note | None:
    """The loss exploded: validation loss NaN or far above its best, or the batch loss diverged or
    climbed far above where it started; or the rate lies beyond the LR finder's lowest loss and the
    model did not learn. Epochs without a validation measurement are left out: their NaN is an
    empty set, not an explosion."""
    valid = _col([e for e in epochs if measured(e)], "valid_loss")
    smooth = [float(b["smooth_loss"]) for b in batches if b.get("smooth_loss") is not None]
    bad_valid = any(not math.isfinite(v) for v in valid)
    finite = [v for v in valid if math.isfinite(v)]
    blew_up = len(finite) >= 2 and finite[-1] > EXPLODE_FACTOR * min(finite)
    diverged = bool(smooth) and (any(not math.isfinite(s) for s in smooth)
                                 or (len(smooth) > 10 and smooth[-1] > DIVERGE_FACTOR * min(smooth)))
    # A continued (unfrozen) model starts from a small loss that any re-warming step can double.
    shot_up = bool(smooth) and not diverged and _get(settings, "method", "") != "unfreeze" \
        and smooth[0] > 0 and max(smooth) > SHOT_UP * smooth[0]
    lr, found = _get(settings, "lr", None), finder_points(lr_find)
    beyond = found is not None and _finite(lr) and lr > found[1] and \
        underfit(epochs, batches, settings=settings, fit=fit) is not None
    if not (bad_valid or blew_up or diverged or shot_up or beyond):
        return None
    if bad_valid:
        what = "The loss became NaN (not a number)"
    elif blew_up:
        what = (f"The validation loss ended at {finite[-1]:.3g}, more than {EXPLODE_FACTOR:g}× its "
                f"best {min(finite):.3g}")
    elif diverged:
        what = "The loss shot up during training"
    elif shot_up:
        what = (f"The loss shot up during training, from {smooth[0]:.3g} at the start to "
                f"{max(smooth):.3g}")
    else:
        what = (f"The learning rate {lr:.2g} is past the bottom of the LR finder's curve (its loss "
                f"was lowest at {found[1]:.2g} and climbed after), and the model did not learn")
    return Note("lr_too_high", "error", "Learning rate too high",
                f"{what}: the steps were so large that they overshot and the weights were thrown far "
                "from anything useful. Start again from a fresh model with a lower learning rate — "
                "a tenth of this one, or the LR finder's valley suggestion.")


def lr_too_low(epochs: Sequence[dict], batches: Sequence[dict] = (), *, settings: Any = None,
               lr_find: Mapping | None = None, fit: Mapping | None = None) -> Note | None:
    """Underfitting whose cause is the rate: far below the finder's valley, or a loss that barely
    moved (also when nothing tells the rate and the epochs apart)."""
    why = underfit(epochs, batches, settings=settings, fit=fit)
    if why is None:
        return None
    cause, evidence = underfit_cause(epochs, batches, settings=settings, lr_find=lr_find)
    if cause == "epochs":
        return None
    return Note("lr_too_low", "warning", "Learning rate too low",
                f"The model has not yet learned even the images it trains on: {why}"
                + (f"; {evidence}" if evidence else "") + ". Each step moves the weights too "
                "little, so more epochs at this rate would take a very long time: pick a larger "
                "learning rate (the LR finder's valley) and train again.")


def too_few_epochs(epochs: Sequence[dict], batches: Sequence[dict] = (), *, settings: Any = None,
                   lr_find: Mapping | None = None, fit: Mapping | None = None) -> Note | None:
    """Underfitting whose cause is the length: a good rate, a loss that fell a lot and was still
    falling when training stopped (also when nothing tells the rate and the epochs apart)."""
    why = underfit(epochs, batches, settings=settings, fit=fit)
    if why is None:
        return None
    cause, evidence = underfit_cause(epochs, batches, settings=settings, lr_find=lr_find)
    if cause == "lr":
        return None
    n = len([e for e in epochs if measured(e)])
    return Note("too_few_epochs", "warning", "Too few epochs",
                f"The model has not yet learned even the images it trains on: {why}"
                + (f"; {evidence}" if evidence else "") + f". {n} epoch{'s' * (n != 1)} "
                "ended the learning too early: train again from the start with more epochs (the "
                "one-cycle schedule then spreads the same learning rate over a longer run).")


def too_many_epochs(epochs: Sequence[dict], batches: Sequence[dict] = (), **_: Any) -> Note | None:
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


def train_below_valid(epochs: Sequence[dict], batches: Sequence[dict] = (), **_: Any) -> Note | None:
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


def train_above_valid(epochs: Sequence[dict], batches: Sequence[dict] = (), *, settings: Any = None,
                      fit: Mapping | None = None, **_: Any) -> Note | None:
    """Train loss above valid loss because of augmentation or dropout: expected, not underfitting."""
    epochs, why = [e for e in epochs if measured(e)], regularised(settings)
    if not epochs or not why:
        return None
    t, v = epochs[-1].get("train_loss"), epochs[-1].get("valid_loss")
    if not (_finite(t) and _finite(v)) or t <= v:
        return None
    clean = (f" Measured like the validation images (no augmentation, dropout off), the training "
             f"loss is {fit['train_loss']:.3g}." if fit and _finite(fit.get("train_loss")) else "")
    return Note("train_above_valid", "info", "Training loss above validation loss is expected here",
                f"Training loss {t:.3g} > validation loss {v:.3g}, because {' and '.join(why)} "
                "make every training batch harder than the validation images (dropout is off "
                f"when validating).{clean} So here it is not a sign of underfitting.")


def memorised(epochs: Sequence[dict], batches: Sequence[dict] = (), *, fit: Mapping | None = None,
              **_: Any) -> Note | None:
    """Training images learned by heart, validation images much worse: a generalisation gap."""
    epochs = [e for e in epochs if measured(e)]
    if not epochs or not fit or not _finite(fit.get("train_error")):
        return None
    train_err, err = float(fit["train_error"]), float(epochs[-1]["error_rate"])
    if err < UNDERFIT_ABS or train_err > MEMORISED * err:
        return None
    return Note("memorised", "info", "Learned the training images by heart",
                f"The model gets {1 - train_err:.1%} of its training images right but misses "
                f"{err:.1%} of the validation images: what it learned fits the training images far "
                "better than new ones. More training images, augmentation, dropout (ps) and weight "
                "decay (wd) narrow that gap; fewer epochs help only if the error rate rose again.")


#: The primary rules, in order of precedence: the first that fires is the run's finding.
RULES: tuple[Callable[..., Note | None], ...] = (lr_too_high, too_many_epochs, lr_too_low,
                                                  too_few_epochs)
#: Notes that only ever come second.
SECONDARY: tuple[Callable[..., Note | None], ...] = (train_below_valid, train_above_valid, memorised)
#: A primary finding that makes another one moot.
MOOT = {"lr_too_high": ("lr_too_low", "too_few_epochs", "too_many_epochs", "train_below_valid",
                        "train_above_valid", "memorised"),
        # an underfit run's gap is not "expected"; it was not memorising either
        "lr_too_low": ("train_above_valid", "memorised"),
        "too_few_epochs": ("train_above_valid", "memorised")}


class Diagnosis(list):
    """The notes of a run, the primary finding first (a list of Note, as before)."""

    @property
    def primary(self) -> Note:
        return self[0]

    @property
    def kind(self) -> str:
        return self[0].kind

    @property
    def secondary(self) -> list[Note]:
        return list(self[1:])


def _second(note: Note) -> Note:
    return Note(note.kind, "info", note.title, note.text)


def diagnose(epochs: Sequence[dict], batches: Sequence[dict] = (), *, cancelled: bool = False,
             settings: Any = None, lr_find: Mapping | None = None,
             fit: Mapping | None = None) -> Diagnosis:
    """One primary finding for a run's epoch rows (epoch, train_loss, valid_loss, error_rate) and
    per-batch records (loss, smooth_loss), then secondary notes (level "info").

    settings: RunSettings or a saved settings dict (augment, ps, lr, method); lr_find: the LR
    finder's record (lrs, losses, suggestions); fit: engine.fit_check's measurement."""
    if not epochs:
        return Diagnosis([Note("no_epochs", "info", "No finished epoch yet",
                               "The run stopped before its first epoch ended, so there is nothing "
                               "to judge; the model was left as it was.")])
    given = {"settings": settings, "lr_find": lr_find, "fit": fit}
    found = [n for n in (rule(epochs, batches, **given) for rule in RULES) if n is not None]
    empty = no_validation(epochs, batches)
    if empty is not None:
        # Only what the training loss shows can still be said (a diverging batch loss).
        return Diagnosis([empty] + [_second(n) for n in found if n.kind == "lr_too_high"]
                         + _cancelled(cancelled))
    if found:
        primary = found[0]
        others = [_second(n) for n in found[1:] if n.kind not in MOOT.get(primary.kind, ())]
    else:
        err = epochs[-1].get("error_rate")
        where = f" with an error rate of {err:.2%}" if _finite(err) else ""
        primary, others = Note("healthy", "success", "Looks healthy",
                               f"Both losses went down and the error rate did not rise again{where}. "
                               "To improve further: more epochs, or fine-tune a pretrained "
                               "model."), []
    extra = [n for n in (rule(epochs, batches, **given) for rule in SECONDARY)
             if n is not None and n.kind not in MOOT.get(primary.kind, ())]
    return Diagnosis([primary] + others + extra + _cancelled(cancelled))


def _cancelled(cancelled: bool) -> list[Note]:
    return [Note("cancelled", "info", "Cancelled",
                 "The run was cancelled; the model kept is the one after its last finished "
                 "epoch.")] if cancelled else []


__all__ = ["Note", "Diagnosis", "diagnose", "lr_too_high", "lr_too_low", "too_few_epochs",
           "too_many_epochs", "train_below_valid", "train_above_valid", "memorised", "RULES",
           "SECONDARY", "PRIMARY_KINDS", "measured", "no_validation", "validation_note",
           "underfit", "underfit_cause", "loss_drop", "finder_points", "regularised"]
