"""The lesson's four failure runs, one click (or one command-line flag) each.

`EXPERIMENTS` maps each name to the settings it overrides on top of the current run's settings
(data set, model, seed stay as they are), so a learner sees what one change does. Each name is also
the kind the coach (engine.coach.diagnose) gives the run when the symptom shows. Tuned on the
built-in digits (simple_cnn from scratch, 16 px); on photos the same changes point the same way.

    lr_too_high      lr 1.0       a hundred times the digits' rate: the loss shoots up
    lr_too_low       lr 1e-5      the lesson's value: the loss hardly moves
    too_few_epochs   1 epoch      a good rate, stopped while the loss still falls
    too_many_epochs  the lesson's overfitting recipe: a tiny training share (10 %), no weight
                     decay, no dropout, no augmentation, many epochs
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.errors import TrainingError
from engine.settings import RunSettings


@dataclass(frozen=True)
class Experiment:
    """One failure run: what it changes and what to look for."""

    name: str
    title: str
    overrides: Mapping[str, Any]   # RunSettings fields set on top of the current settings
    symptom: str                   # what the curves and the coach should show


LIST: tuple[Experiment, ...] = (
    Experiment(
        "lr_too_high", "Learning rate too high", {"lr": 1.0},
        "Within the first epoch the loss shoots up far above where it started (the validation "
        "loss reaches thousands) and the error rate jumps around; one-cycle's final small steps "
        "pull it back part of the way, but it ends worse than at a good rate (digits: about 97 % "
        "instead of 99 %). The coach says: learning rate too high."),
    Experiment(
        "lr_too_low", "Learning rate too low", {"lr": 1e-5},
        "The loss hardly moves from where it started and the error rate falls only slowly, "
        "staying high (digits: about 70 % wrong after 10 epochs); the training loss stays above "
        "the validation loss. The coach says: learning rate too low."),
    Experiment(
        "too_few_epochs", "Too few epochs", {"epochs": 1},
        "One epoch at a good rate: the loss falls fast but training stops while it is still "
        "falling, and the model still gets many of its own training images wrong (digits: about "
        "9 % wrong instead of 1 %). The coach says: too few epochs."),
    Experiment(
        "too_many_epochs", "Too many epochs (overfitting)",
        {"valid_pct": 0.9, "wd": 0.0, "ps": 0.0, "augment": False, "epochs": 40},
        "The lesson's overfitting recipe: only 10 % of the images to train on and nothing that "
        "fights memorising (no weight decay, dropout or augmentation), for 40 epochs. The "
        "training images are soon learned by heart (training loss near zero); the error rate is "
        "lowest part-way and then rises again (digits, seed 42: 9.7 % after epoch 18, 10.9 % at "
        "the end) while the validation loss climbs. The coach says: too many epochs. As the "
        "lesson warns, overfitting is hard to provoke: with other seeds the error rate often "
        "only levels off, and the coach then calls the run healthy and notes the memorising."),
)

#: name -> the settings it overrides.
EXPERIMENTS: dict[str, dict[str, Any]] = {e.name: dict(e.overrides) for e in LIST}
#: name -> the whole description (title, overrides, symptom).
EXPERIMENT_INFO: dict[str, Experiment] = {e.name: e for e in LIST}


def check_name(name: str) -> Experiment:
    """The experiment called name; an unknown one is an error listing the valid names."""
    if name not in EXPERIMENT_INFO:
        raise TrainingError(f"Unknown experiment {name!r}; choose one of "
                            f"{', '.join(EXPERIMENTS)}.")
    return EXPERIMENT_INFO[name]


def apply_experiment(settings: RunSettings, name: str) -> RunSettings:
    """settings with the experiment's overrides (everything else kept)."""
    return settings.with_(**check_name(name).overrides)


def describe(overrides: Mapping[str, Any]) -> str:
    """The overrides as the settings they set: "lr=1, epochs=1"."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in overrides.items())


__all__ = ["Experiment", "EXPERIMENTS", "EXPERIMENT_INFO", "LIST", "check_name",
           "apply_experiment", "describe"]
