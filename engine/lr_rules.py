"""The LR finder's suggestion rules, as fastai defines them: small pure functions of a recorded
(learning rate, smoothed loss) curve, each returning one learning rate.

They compute in the arrays' own dtype so that float32 inputs give fastai's float32 answers bit for
bit. `suggest` applies fastai's trimming first (drop the first num_it//10 and the last 5 points, cut
at the first NaN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

#: The four LR-finder rules, in the order fastai lists them.
SUGGESTION_RULES = ("valley", "slide", "minimum", "steep")


def _arrays(lrs: Any, losses: Any) -> tuple[np.ndarray, np.ndarray]:
    # Tensors are accepted too (duck-typed, so this module never needs torch).
    lrs = np.asarray(lrs.detach().cpu() if hasattr(lrs, "detach") else lrs)
    losses = np.asarray(losses.detach().cpu() if hasattr(losses, "detach") else losses)
    if lrs.ndim != 1 or lrs.shape != losses.shape:
        raise ValueError("lrs and losses must be 1-D arrays of the same length.")
    if len(lrs) < 2:
        raise ValueError("An LR suggestion needs at least two recorded points; run the finder longer.")
    return lrs, losses

def valley(lrs: Any, losses: Any) -> float:
    """The longest stretch where the loss keeps falling; a third and a half-third into it."""
    lrs, losses = _arrays(lrs, losses)
    n = len(losses)
    # Longest decreasing subsequence ending at each i (quadratic, as fastai; n is about 85).
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            # fastai updates the best run inside the inner loop; kept so answers match exactly.
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def steep(lrs: Any, losses: Any) -> float:
    """The lr where the loss falls fastest per unit of log(lr)."""
    lrs, losses = _arrays(lrs, losses)
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[int(np.argmin(grads))])


def minimum(lrs: Any, losses: Any) -> float:
    """A tenth of the lr at the lowest loss (the minimum itself is already too high to train at)."""
    lrs, losses = _arrays(lrs, losses)
    return float(lrs[int(np.argmin(losses))]) / 10


def slide(lrs: Any, losses: Any, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> float:
    """Slide a window of lr_diff points leftwards from the end until the loss gradient at its two
    ends differs by at most thresh; suggest the window's left lr (× adjust_value)."""
    lrs, losses = _arrays(lrs, losses)
    if len(losses) <= lr_diff:
        raise ValueError(f"The slide rule needs more than {lr_diff} points; got {len(losses)}.")
    grad = np.gradient(losses)
    r_idx, l_idx = -1, -1 - lr_diff
    local_min_lr = lrs[l_idx]
    while l_idx >= -len(losses) and abs(grad[r_idx] - grad[l_idx]) > thresh:
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


RULES: dict[str, Callable[..., float]] = {"valley": valley, "slide": slide, "minimum": minimum,
                                           "steep": steep}


def trim_for_suggestions(lrs: Sequence[float], losses: Sequence[float],
                         num_it: int) -> tuple[np.ndarray, np.ndarray]:
    """fastai's preparation: drop the first num_it//10 and last 5 points, cut at the first NaN."""
    lrs_a = np.asarray(list(lrs)[num_it // 10:-5], dtype=np.float32)
    losses_a = np.asarray(list(losses)[num_it // 10:-5], dtype=np.float32)
    nan = np.flatnonzero(np.isnan(losses_a))
    if len(nan):
        lrs_a, losses_a = lrs_a[:nan[0]], losses_a[:nan[0]]
    return lrs_a, losses_a


def suggest(lrs: Sequence[float], losses: Sequence[float], num_it: int,
            rules: Iterable[str] = SUGGESTION_RULES) -> dict[str, float | None]:
    """Each rule's learning rate for a recorded LR-finder curve; None where too few points remain."""
    t_lrs, t_losses = trim_for_suggestions(lrs, losses, num_it)
    out: dict[str, float | None] = {}
    for name in rules:
        if name not in RULES:
            raise ValueError(f"Unknown suggestion rule {name!r}; choose from {', '.join(RULES)}.")
        try:
            out[name] = RULES[name](t_lrs, t_losses)
        except (ValueError, IndexError):
            out[name] = None
    return out


@dataclass
class LRFindResult:
    """What the LR finder recorded (every point) and what each rule suggests."""

    lrs: list[float]                 # learning rate used at each step
    losses: list[float]              # smoothed loss after each step (what is plotted)
    raw_losses: list[float]          # the batch losses themselves
    suggestions: dict[str, float | None]
    num_it: int
    stopped_early: bool              # True when the loss diverged (or cancel) before num_it steps

    def point(self, lr: float) -> float:
        """The smoothed loss at lr on the plotted curve (log-lr interpolation), for a marker."""
        return float(np.interp(math.log(lr), np.log(self.lrs), self.losses))



__all__ = ["SUGGESTION_RULES", "RULES", "valley", "steep", "minimum", "slide", "trim_for_suggestions",
           "suggest", "LRFindResult"]
