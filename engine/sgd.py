"""Fitting a line by gradient descent: the lesson's two-parameter model, its loss surface, the
learning rate that separates converging from diverging, and which steps an animation shows.

The model is y = a1·x + a2, written as a matrix product x @ a where x has a second column of ones.
The loss is the mean squared error. `fit` runs the training loop in numpy with the gradient written
out by hand (fast enough for an animation of 1000 steps); `fit_autograd` is the same loop written
with PyTorch's `loss.backward()`, exactly as the page shows it, and the tests check both agree.

Maths only: arrays and dataclasses out. The SGD page's figures are drawn from them in
ui/sgd_figs.py. torch is imported inside the functions that need it, so importing this module is
cheap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from engine.numbers import NumberError, read_float

OPTIMIZERS = ("sgd", "momentum", "adam")
OPTIMIZER_LABELS = {
    "sgd": "plain (a -= lr · grad)",
    "momentum": "momentum (keeps some of the last step)",
    "adam": "Adam (step scaled per parameter)",
}
LESSON_A = (3.0, 2.0)      # the true line of the lesson: y = 3x + 2 (+ noise)
LESSON_A0 = (-1.0, 1.0)    # where the lesson starts
ADAM_BETAS = (0.9, 0.999)  # PyTorch's defaults
ADAM_EPS = 1e-8
DIVERGE_FACTOR = 1e6       # a loss this many times the start's (or 1, if larger) counts as diverged
MAX_STEPS = 100_000
MAX_POINTS = 100_000
LR_RANGE = (1e-4, 10.0)    # the learning rates the page offers (slider and comparison)
MAX_RATES_TEXT = 200       # characters of a comparison list: four rates fit many times over


class SGDError(ValueError):
    """A setting the training loop cannot use; the message is a sentence for the user."""


# Data ----------------------------------------------------------------------------------------------

def make_line_data(n: int = 100, a: Sequence[float] = LESSON_A, *, noise: float = 1.0,
                   seed: int = 42):
    """The lesson's points: x (n, 2) with x[:, 0] uniform in [-1, 1] and x[:, 1] = 1;
    y = x @ a + noise · U[0, 1) (like `torch.rand(n)`). Seeded: the same arguments give the same data.
    Returns float32 torch tensors (x, y)."""
    import torch

    if not isinstance(n, (int, np.integer)) or not 2 <= n <= MAX_POINTS:
        raise SGDError(f"The number of points must be a whole number from 2 to {MAX_POINTS}.")
    if not math.isfinite(noise) or noise < 0:
        raise SGDError("The noise must be a number of 0 or more.")
    if len(a) != 2 or not all(math.isfinite(v) for v in a):
        raise SGDError("The true line needs two finite numbers (slope, intercept).")
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.ones(int(n), 2)                                      # (n, 2)
    x[:, 0].uniform_(-1.0, 1.0, generator=gen)
    y = x @ torch.tensor([float(v) for v in a]) + noise * torch.rand(int(n), generator=gen)  # (n,)
    return x, y


def as_numpy(x, y) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as float64 numpy arrays, from tensors or arrays; checks the shapes (n, 2) and (n,)."""
    xs = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    ys = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[1] != 2 or ys.shape != (xs.shape[0],):
        raise SGDError("x must have shape (n, 2) and y shape (n,).")
    return xs, ys


def mse(x, y, a) -> float:
    """Mean squared error of the line `a` on the points (x, y)."""
    xs, ys = as_numpy(x, y)
    r = xs @ np.asarray(a, dtype=np.float64) - ys
    return float(r @ r / len(ys))


def least_squares(x, y) -> np.ndarray:
    """The best line (a1, a2): where the loss surface has its bottom."""
    xs, ys = as_numpy(x, y)
    return np.linalg.lstsq(xs, ys, rcond=None)[0]


def hessian(x) -> np.ndarray:
    """Curvature of the MSE, the same everywhere for a line: (2/n) · xᵀx, shape (2, 2)."""
    xs = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    return 2.0 / len(xs) * xs.T @ xs


def steepest_curvature(x) -> float:
    """λmax of the Hessian (2/n)·xᵀx: the curvature of the loss bowl along its steepest direction."""
    return float(np.linalg.eigvalsh(hessian(x))[-1])


def critical_lr(x, *, momentum: float = 0.0) -> float:
    """The learning rate above which full-batch gradient descent on this MSE diverges:
    2 / λmax of the Hessian (2/n)·xᵀx. With heavy-ball momentum β the limit is 2(1 + β) / λmax."""
    return 2.0 * (1.0 + momentum) / steepest_curvature(x)


def parse_learning_rates(text: str) -> list[float]:
    """'0.01, 0.1, 1' -> [0.01, 0.1, 1.0]: two to four rates in LR_RANGE, separated by commas (or
    semicolons). Raises SGDError with a sentence for the user."""
    lo, hi = LR_RANGE
    text = str(text)
    if len(text) > MAX_RATES_TEXT:   # checked first: a link may carry any length
        raise SGDError(f"The list of learning rates is too long ({len(text):,} characters; at most "
                       f"{MAX_RATES_TEXT}): type two to four rates such as 0.01, 0.1, 0.9.")
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    values = []
    for p in parts:
        try:
            v = read_float(p)        # length-checked; NaN and inf fall to the range test below
        except NumberError as exc:   # "“x” is not a number." or "… is too long …"
            raise SGDError(f"{exc} Type two to four learning rates separated by commas, such as "
                           "0.01, 0.1, 0.9.") from None
        if not (math.isfinite(v) and lo <= v <= hi):
            raise SGDError(f"{p} is outside {lo:g} … {hi:g}: pick learning rates in that range.")
        values.append(v)
    if not 2 <= len(values) <= 4:
        raise SGDError(f"Type two to four learning rates separated by commas (got "
                       f"{len(values)}), such as 0.01, 0.1, 0.9.")
    return values


def loss_surface(x, y, a1_values, a2_values) -> np.ndarray:
    """MSE on a grid: result[j, i] is the loss of the line (a1_values[i], a2_values[j]), the layout a
    Plotly contour expects (rows follow the vertical axis). Shape (len(a2_values), len(a1_values))."""
    xs, ys = as_numpy(x, y)
    n = len(ys)
    s = xs.T @ xs / n                    # (2, 2)
    c = xs.T @ ys / n                    # (2,)
    d = ys @ ys / n
    a1 = np.asarray(a1_values, dtype=np.float64)[None, :]
    a2 = np.asarray(a2_values, dtype=np.float64)[:, None]
    z = s[0, 0] * a1**2 + 2 * s[0, 1] * a1 * a2 + s[1, 1] * a2**2 - 2 * (c[0] * a1 + c[1] * a2) + d
    return np.maximum(z, 0.0)            # rounding can dip a hair below 0 at the bottom


# Training ------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    """One training run. Rows after `diverged_at` are NaN: the run stopped there."""

    params: np.ndarray           # (steps+1, 2) a at the start and after every step
    losses: np.ndarray           # (steps+1,) full-data MSE at each row of params
    grads: np.ndarray            # (steps, 2) gradient used by each step (its mini-batch only)
    batches: list[np.ndarray] | None  # indices of the points each step used; None = full batch
    diverged_at: int | None      # first step whose loss is inf/nan or DIVERGE_FACTOR times too big
    lr: float                    # learning rate
    steps: int                   # steps asked for
    batch_size: int | None       # None = full batch (gradient descent)
    optimizer: str               # one of OPTIMIZERS
    momentum: float              # β of "momentum" (unused by the others)
    n: int                       # number of points

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def last(self) -> int:
        """Index of the last row that was computed."""
        return self.steps if self.diverged_at is None else self.diverged_at

    @property
    def final(self) -> np.ndarray:
        return self.params[self.last]

    @property
    def final_loss(self) -> float:
        return float(self.losses[self.last])

    @property
    def epochs(self) -> float:
        """How many times the run has seen every point (an epoch = one pass over the data)."""
        return self.steps * (self.batch_size or self.n) / self.n


def _check_fit_args(n: int, a0, lr: float, steps: int, batch_size, optimizer: str,
                    momentum: float) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise SGDError("The learning rate must be a positive number.")
    if not isinstance(steps, (int, np.integer)) or not 0 <= steps <= MAX_STEPS:
        raise SGDError(f"The number of steps must be a whole number from 0 to {MAX_STEPS}.")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                   or not 1 <= batch_size <= n):
        raise SGDError(f"The batch size must be a whole number from 1 to {n} (the number of "
                       "points), or None for the full batch.")
    if not 0.0 <= momentum < 1.0:
        raise SGDError("Momentum must be at least 0 and below 1.")
    if len(a0) != 2 or not all(math.isfinite(float(v)) for v in a0):
        raise SGDError("The start point needs two finite numbers (a1, a2).")


def minibatches(n: int, batch_size: int | None, steps: int, seed: int = 0) -> Iterator[np.ndarray | None]:
    """Point indices for each step: shuffle, deal out batches, reshuffle after every epoch (the last
    batch of an epoch may be smaller). Yields None per step for the full batch."""
    if batch_size is None:
        for _ in range(steps):
            yield None
        return
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(n), 0
    for _ in range(steps):
        if pos >= n:
            order, pos = rng.permutation(n), 0
        yield order[pos:pos + batch_size]
        pos += batch_size


def fit(x, y, *, a0: Sequence[float] = LESSON_A0, lr: float = 0.1, steps: int = 100,
        batch_size: int | None = None, optimizer: str = "sgd", momentum: float = 0.9,
        seed: int = 0) -> FitResult:
    """Train the line by gradient descent (numpy, closed-form gradient (2/b)·xbᵀ(xb·a − yb)).

    batch_size None = every point in every step (gradient descent); an integer = random mini-batches
    (stochastic gradient descent), reshuffled each epoch from `seed`. A run that blows up stops at
    the step where its loss became inf/nan or huge; `diverged_at` says which."""
    xs, ys = as_numpy(x, y)
    n = len(ys)
    _check_fit_args(n, a0, lr, steps, batch_size, optimizer, momentum)
    steps = int(steps)
    params = np.full((steps + 1, 2), np.nan)
    losses = np.full(steps + 1, np.nan)
    grads = np.full((steps, 2), np.nan)
    batches: list[np.ndarray] | None = [] if batch_size is not None else None
    a = np.asarray(a0, dtype=np.float64).copy()
    v = np.zeros(2)                       # momentum buffer / Adam's first moment
    s = np.zeros(2)                       # Adam's second moment
    b1, b2 = ADAM_BETAS
    xty2 = 2.0 / n * xs.T @ ys            # parts of the full-batch gradient that never change
    h = 2.0 / n * xs.T @ xs
    diverged_at = None
    with np.errstate(over="ignore", invalid="ignore"):
        r = xs @ a - ys
        losses[0] = r @ r / n
        params[0] = a
        limit = DIVERGE_FACTOR * max(losses[0], 1.0)
        if not np.isfinite(losses[0]):
            diverged_at = 0
        for t, idx in enumerate(minibatches(n, batch_size, steps if diverged_at is None else 0,
                                            seed), start=1):
            if idx is None:
                g = h @ a - xty2
            else:
                xb = xs[idx]
                g = 2.0 / len(idx) * xb.T @ (xb @ a - ys[idx])
                batches.append(idx)
            grads[t - 1] = g
            if optimizer == "sgd":
                a = a - lr * g
            elif optimizer == "momentum":     # PyTorch's SGD(momentum=β): v = β·v + g; a -= lr·v
                v = momentum * v + g if t > 1 else g.copy()
                a = a - lr * v
            else:                             # Adam, as torch.optim.Adam with its defaults
                v = b1 * v + (1 - b1) * g
                s = b2 * s + (1 - b2) * g * g
                vhat, shat = v / (1 - b1**t), s / (1 - b2**t)
                a = a - lr * vhat / (np.sqrt(shat) + ADAM_EPS)
            r = xs @ a - ys
            loss = r @ r / n
            params[t], losses[t] = a, loss
            if not np.isfinite(loss) or loss > limit:
                diverged_at = t
                break
    return FitResult(params=params, losses=losses, grads=grads, batches=batches,
                     diverged_at=diverged_at, lr=float(lr), steps=steps, batch_size=batch_size,
                     optimizer=optimizer, momentum=float(momentum), n=n)


def fit_autograd(x, y, *, a0: Sequence[float] = LESSON_A0, lr: float = 0.1, steps: int = 100,
                 batch_size: int | None = None, optimizer: str = "sgd", momentum: float = 0.9,
                 seed: int = 0, dtype=None) -> np.ndarray:
    """The same training with PyTorch autograd: the loop the page shows as code. Returns params
    (steps+1, 2). Slow (a few hundred µs a step); the reference the fast `fit` is tested against."""
    import torch

    dtype = dtype or torch.float64
    xs, ys = as_numpy(x, y)
    _check_fit_args(len(ys), a0, lr, steps, batch_size, optimizer, momentum)
    x_all, y_all = torch.tensor(xs, dtype=dtype), torch.tensor(ys, dtype=dtype)
    a = torch.tensor(list(a0), dtype=dtype, requires_grad=True)
    opt = None
    if optimizer == "momentum":
        opt = torch.optim.SGD([a], lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam([a], lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    out = [a.detach().clone()]
    for idx in minibatches(len(ys), batch_size, int(steps), seed):
        xb, yb = (x_all, y_all) if idx is None else (x_all[idx], y_all[idx])
        preds = xb @ a                                    # the line's prediction per point
        loss = ((preds - yb) ** 2).mean()                 # mean squared error
        loss.backward()                                   # a.grad = d loss / d a
        if opt is None:
            with torch.no_grad():
                a -= lr * a.grad                          # step downhill
                a.grad.zero_()                            # forget this step's gradient
        else:
            opt.step()
            opt.zero_grad()
        out.append(a.detach().clone())
    return torch.stack(out).numpy()


# The "why a learning rate at all" panel: a ball on a 1-D parabola ------------------------------------

QUADRATIC_CASES = (          # (title, lr) on f(w) = w², where 1.0 is the critical learning rate
    ("small steps", 0.1),
    ("overshoots, still converges", 0.85),
    ("diverges", 1.1),
)


def quadratic_descent(lr: float, *, w0: float = -2.0, steps: int = 12,
                      limit: float = 1e6) -> tuple[np.ndarray, np.ndarray]:
    """Gradient descent on f(w) = w² (slope 2w): each jump is w -= lr · 2w, so the distance to the
    bottom is multiplied by |1 − 2·lr| — below 1 converges, above 1 (lr > 1) diverges.
    Returns (w, f(w)), each (steps+1,); stops early (shorter arrays) once |w| exceeds `limit`."""
    w = [float(w0)]
    for _ in range(int(steps)):
        nxt = w[-1] - lr * 2.0 * w[-1]
        if not math.isfinite(nxt) or abs(nxt) > limit:
            break
        w.append(nxt)
    ws = np.array(w)
    return ws, ws**2


# From numbers to classes: softmax and cross-entropy ---------------------------------------------------

def softmax(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Probabilities from raw scores: e^z_i / Σ_j e^z_j. The largest score is subtracted first
    (the result is the same, and e^z cannot overflow)."""
    z = np.asarray(scores, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def cross_entropy(scores: Sequence[float] | np.ndarray, actual: int) -> float:
    """The loss of one item whose real class is `actual`: −ln softmax(scores)[actual], computed as
    log Σ e^z − z_actual so that a very unlikely class still gives a finite number."""
    z = np.asarray(scores, np.float64)
    if not 0 <= int(actual) < len(z):
        raise SGDError(f"The actual class must be one of 0..{len(z) - 1}.")
    top = float(z.max())
    return float(top + math.log(float(np.exp(z - top).sum())) - z[int(actual)])


# Which steps an animation shows, and the window around the path ------------------------------------

def frame_steps(steps: int, last: int, max_frames: int = 200) -> np.ndarray:
    """Which steps get an animation frame: all of 0..last when they fit in `max_frames`, otherwise
    evenly spread ones that always include 0 and `last` (the final or the diverging step)."""
    if last + 1 <= max_frames:
        return np.arange(last + 1)
    return np.unique(np.round(np.linspace(0, last, max_frames)).astype(int))


def view_window(x, y, result: FitResult, extra: Sequence[np.ndarray] = ()) -> tuple[tuple, tuple]:
    """(a1 range, a2 range) for the loss surface: the start, the optimum and the path, but never
    more than a few times the start-to-optimum distance (a diverging path is clipped)."""
    best = least_squares(x, y)
    start = result.params[0]
    span = max(float(np.max(np.abs(start - best))), 1.0)
    cap = 3.0 * span
    pts = [result.params[: result.last + 1], *[np.asarray(e)[np.all(np.isfinite(e), axis=1)]
                                               for e in extra]]
    pts = np.concatenate([p for p in pts if len(p)] + [best[None], start[None]])
    pts = np.clip(pts, best - cap, best + cap)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = np.maximum((hi - lo) * 0.12, 0.5)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))
