"""Learning-rate and momentum plans: parameter groups, one-cycle schedules and the stages of a run.

Training (engine.training) and the Train page's schedule preview both call `plan_run` / `stage_plan`,
so the preview is, step for step, what the optimiser is given. The maths follows fastai:
- a learning rate per *layer group* (earliest layers first, the head last): a float for every group,
  slice(lo, hi) spread geometrically, slice(hi) for the head with hi/10 for the body;
- one cycle: two cosines meeting at pct_start, from lr/div up to lr, then down to lr/div_final, with
  Adam's beta1 (momentum) doing the opposite between moms[0], moms[1] and moms[2];
- fine_tune: freeze_epochs on the head at slice(lr) with pct_start 0.99, then every layer at
  slice(lr/2/lr_mult, lr/2), pct_start 0.3, div 5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engine.errors import TrainingError

MOMS = (0.95, 0.85, 0.95)       # Adam beta1 at the start, at the peak rate and at the end


# ------------------------------------------------------------------------------ parameter groups


def even_mults(start: float, stop: float, n: int) -> list[float]:
    """n values from start to stop, evenly spaced on a log scale (geometric)."""
    if n == 1:
        return [float(stop)]
    step = (stop / start) ** (1 / (n - 1))
    return [float(start * step**i) for i in range(n)]


def group_lrs(lr: float | slice, n_groups: int) -> list[float]:
    """One learning rate per layer group, as fastai reads `lr`.

    A float applies to every group; slice(lo, hi) spreads lo..hi geometrically from the earliest
    group to the head; slice(hi) gives the head hi and every body group hi/10.
    """
    if isinstance(lr, slice):
        if lr.stop is None:
            raise ValueError("A learning-rate slice needs an upper value, as in slice(1e-5, 1e-3).")
        if lr.start:
            return even_mults(lr.start, lr.stop, n_groups)
        return [lr.stop / 10] * (n_groups - 1) + [float(lr.stop)]
    return [float(lr)] * n_groups


def group_names(n_groups: int) -> list[str]:
    """Names for a plan's columns, earliest layers first."""
    if n_groups == 1:
        return ["all layers"]
    if n_groups == 2:
        return ["body", "head"]
    if n_groups == 3:
        return ["early layers", "late layers", "head"]
    return [f"group {i + 1}" for i in range(n_groups - 1)] + ["head"]


# ------------------------------------------------------------------------------------- one cycle


@dataclass
class Schedule:
    """Per-step hyper-parameters: lrs (total_steps, n_groups) and moms (total_steps,), Adam's beta1."""

    lrs: np.ndarray
    moms: np.ndarray

    def __len__(self) -> int:
        return len(self.moms)


def _cos(start: float | np.ndarray, end: float | np.ndarray, pos: float) -> Any:
    """Cosine from start (pos 0) to end (pos 1)."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def one_cycle_at(pos: float, lr_max: np.ndarray, *, div: float = 25.0, div_final: float = 1e5,
                 pct_start: float = 0.25,
                 moms: Sequence[float] = MOMS) -> tuple[np.ndarray, float]:
    """(lrs, mom) at training position pos in [0, 1): two cosines meeting at pct_start."""
    lr_max = np.asarray(lr_max, dtype=np.float64)
    if pos < pct_start:
        p = pos / pct_start
        return _cos(lr_max / div, lr_max, p), _cos(moms[0], moms[1], p)
    p = (pos - pct_start) / (1 - pct_start)
    return _cos(lr_max, lr_max / div_final, p), _cos(moms[1], moms[2], p)


def one_cycle_schedule(total_steps: int, lr_max: float | slice, *, div: float = 25.0,
                       div_final: float = 1e5, pct_start: float = 0.25,
                       moms: Sequence[float] = MOMS, n_groups: int = 1) -> Schedule:
    """The learning rate (per layer group) and momentum for every step of a one-cycle run.

    Step i sits at position i/total_steps, as in fastai: the first step uses lr_max/div, the step at
    pct_start uses lr_max, and the rate approaches lr_max/div_final at the end. lr_max may be a
    slice, spread over n_groups as `group_lrs` does. The trainer applies exactly these.
    """
    if total_steps < 1:
        raise TrainingError("A one-cycle run needs at least one step; add data or epochs.")
    if not 0 <= pct_start <= 1:
        raise TrainingError(f"pct_start must be between 0 and 1; got {pct_start}.")
    peak = np.asarray(group_lrs(lr_max, n_groups), dtype=np.float64)
    lrs = np.empty((total_steps, len(peak)))
    ms = np.empty(total_steps)
    for i in range(total_steps):
        lrs[i], ms[i] = one_cycle_at(i / total_steps, peak, div=div, div_final=div_final,
                                     pct_start=pct_start, moms=moms)
    return Schedule(lrs, ms)


# -------------------------------------------------------------------------------- stages of a run


@dataclass(frozen=True)
class Stage:
    """One one-cycle fit inside a run: its epochs, peak rate(s) and shape."""

    name: str                        # "train", "frozen" (head only) or "unfrozen" (every layer)
    epochs: int
    lr_max: float | slice            # a float for every group, or a slice (see group_lrs)
    pct_start: float = 0.25          # share of the steps spent warming up
    div: float = 25.0                # the cycle starts at lr_max/div
    div_final: float = 1e5           # ... and ends near lr_max/div_final
    moms: tuple[float, float, float] = MOMS
    freeze: bool | None = None       # True: freeze the body first; False: unfreeze; None: as it is

    def schedule(self, n_batches: int, n_groups: int) -> Schedule:
        """This stage's per-step rates and momentum for n_batches steps per epoch."""
        return one_cycle_schedule(self.epochs * n_batches, self.lr_max, div=self.div,
                                  div_final=self.div_final, pct_start=self.pct_start,
                                  moms=self.moms, n_groups=n_groups)

    def peak(self, n_groups: int) -> list[float]:
        return group_lrs(self.lr_max, n_groups)


def fit_one_cycle_stage(epochs: int, lr_max: float | slice, *, div: float = 25.0,
                        div_final: float = 1e5, pct_start: float = 0.25,
                        moms: Sequence[float] = MOMS, name: str = "train") -> Stage:
    """The single stage of fit_one_cycle."""
    return Stage(name, int(epochs), lr_max, pct_start, div, div_final, tuple(moms))


def fine_tune_stages(epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, *,
                     lr_mult: float = 100, pct_start: float = 0.3, div: float = 5.0,
                     div_final: float = 1e5, moms: Sequence[float] = MOMS) -> list[Stage]:
    """fastai's fine_tune: the head only for freeze_epochs at slice(base_lr), pct_start 0.99; then
    every layer for epochs at slice(base_lr/2/lr_mult, base_lr/2), with pct_start and div."""
    stages = []
    if freeze_epochs > 0:
        stages.append(Stage("frozen", int(freeze_epochs), slice(base_lr), 0.99, 25.0, div_final,
                            tuple(moms), freeze=True))
    half = base_lr / 2
    stages.append(Stage("unfrozen", int(epochs), slice(half / lr_mult, half), pct_start, div,
                        div_final, tuple(moms), freeze=False))
    return stages


def stages_for(method: str, epochs: int, lr: float, *, freeze_epochs: int = 1,
               lr_lo: float = 1e-5) -> list[Stage]:
    """The stages a Train-page method runs: fit_one_cycle, fine_tune, or unfreeze with
    slice(lr_lo, lr)."""
    if method == "fine_tune":
        return fine_tune_stages(epochs, lr, freeze_epochs)
    if method == "unfreeze":
        return [Stage("train", int(epochs), slice(lr_lo, lr), freeze=False)]
    if method == "fit_one_cycle":
        return [fit_one_cycle_stage(epochs, lr)]
    raise TrainingError(f"Unknown training method {method!r}; choose one of fit_one_cycle, "
                        "fine_tune, unfreeze.")


@dataclass
class RunPlan:
    """Every step of a run: lrs (steps, n_groups), moms (steps,), and where each stage starts."""

    lrs: np.ndarray
    moms: np.ndarray
    stages: list[Stage]
    starts: list[int]                # first step of each stage
    group_names: list[str]

    @property
    def total_steps(self) -> int:
        return len(self.moms)


def plan_stages(stages: Sequence[Stage], n_batches: int, n_groups: int) -> RunPlan:
    """Concatenate the stages' schedules for n_batches steps per epoch and n_groups groups."""
    parts = [st.schedule(n_batches, n_groups) for st in stages]
    starts, at = [], 0
    for p in parts:
        starts.append(at)
        at += len(p)
    return RunPlan(np.concatenate([p.lrs for p in parts]), np.concatenate([p.moms for p in parts]),
                   list(stages), starts, group_names(n_groups))


def plan_run(method: str, epochs: int, lr: float, n_batches: int, n_groups: int, *,
             freeze_epochs: int = 1, lr_lo: float = 1e-5) -> RunPlan:
    """The per-group learning rate and momentum at every step of a Train-page run."""
    return plan_stages(stages_for(method, epochs, lr, freeze_epochs=freeze_epochs, lr_lo=lr_lo),
                       n_batches, n_groups)


__all__ = ["MOMS", "even_mults", "group_lrs", "group_names", "Schedule", "one_cycle_at",
           "one_cycle_schedule", "Stage", "fit_one_cycle_stage", "fine_tune_stages", "stages_for",
           "RunPlan", "plan_stages", "plan_run"]
