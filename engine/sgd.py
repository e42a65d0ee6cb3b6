"""Fitting a line by gradient descent: the lesson's two-parameter model, its loss surface, the
learning rate that separates converging from diverging, and the animation frames the SGD page plays.

The model is y = a1·x + a2, written as a matrix product x @ a where x has a second column of ones.
The loss is the mean squared error. `fit` runs the training loop in numpy with the gradient written
out by hand (fast enough for an animation of 1000 steps); `fit_autograd` is the same loop written
with PyTorch's `loss.backward()`, exactly as the page shows it, and the tests check both agree.

torch is imported inside the functions that need it, so importing this module is cheap.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

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


def _as_numpy(x, y) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    ys = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[1] != 2 or ys.shape != (xs.shape[0],):
        raise SGDError("x must have shape (n, 2) and y shape (n,).")
    return xs, ys


def mse(x, y, a) -> float:
    """Mean squared error of the line `a` on the points (x, y)."""
    xs, ys = _as_numpy(x, y)
    r = xs @ np.asarray(a, dtype=np.float64) - ys
    return float(r @ r / len(ys))


def least_squares(x, y) -> np.ndarray:
    """The best line (a1, a2): where the loss surface has its bottom."""
    xs, ys = _as_numpy(x, y)
    return np.linalg.lstsq(xs, ys, rcond=None)[0]


def hessian(x) -> np.ndarray:
    """Curvature of the MSE, the same everywhere for a line: (2/n) · xᵀx, shape (2, 2)."""
    xs = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    return 2.0 / len(xs) * xs.T @ xs


def critical_lr(x, *, momentum: float = 0.0) -> float:
    """The learning rate above which full-batch gradient descent on this MSE diverges:
    2 / λmax of the Hessian (2/n)·xᵀx. With heavy-ball momentum β the limit is 2(1 + β) / λmax."""
    lam = float(np.linalg.eigvalsh(hessian(x))[-1])
    return 2.0 * (1.0 + momentum) / lam


def loss_surface(x, y, a1_values, a2_values) -> np.ndarray:
    """MSE on a grid: result[j, i] is the loss of the line (a1_values[i], a2_values[j]), the layout a
    Plotly contour expects (rows follow the vertical axis). Shape (len(a2_values), len(a1_values))."""
    xs, ys = _as_numpy(x, y)
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
    xs, ys = _as_numpy(x, y)
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
    xs, ys = _as_numpy(x, y)
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


# Animation frames ------------------------------------------------------------------------------------

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


CODE_LINES = (
    "for step in range(steps):",
    "    preds = x @ a",
    "    loss = ((preds-y)**2).mean()",
    "    loss.backward()",
    "    with torch.no_grad():",
    "        a -= lr * a.grad",
    "        a.grad.zero_()",
)
#: pale for low loss, blue for high, so the red path stands out
SURFACE_COLORS = [[0.0, "#fffbe6"], [0.35, "#dceaf6"], [1.0, "#3d7fb8"]]
PHASES = ((1, "predict"), (2, "loss"), (3, "backward"), (5, "update"))  # (code line, phase name)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "inf" if v > 0 else ("nan" if math.isnan(v) else "-inf")
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.2e}"


#: an empty comment: not "", because a text point that starts empty is never drawn when later
#: frames fill it in (Plotly only updates existing text elements while frames play without redraw)
BLANK = "\u00a0"


def _code_values(result: FitResult, k: int, phase: int | None) -> list[str]:
    """The comment after each code line while step k+1 runs from params[k] (phase None = all lines;
    otherwise only the lines up to that phase have run)."""
    a = result.params[k]
    out = [BLANK] * len(CODE_LINES)
    if k >= result.last:
        out[0] = (f"# diverged at step {k}: loss too large" if result.diverged
                  else f"# all {result.steps} steps done")
        out[1] = f"# a = ({_fmt(a[0])}, {_fmt(a[1])})"
        out[2] = f"# loss = {_fmt(result.losses[k])}"
        return out
    g, nxt = result.grads[k], result.params[k + 1]
    values = [f"# step {k + 1} of {result.steps}", f"# a = ({_fmt(a[0])}, {_fmt(a[1])})",
              f"# loss = {_fmt(result.losses[k])}", f"# a.grad = ({_fmt(g[0])}, {_fmt(g[1])})", BLANK,
              f"# a becomes ({_fmt(nxt[0])}, {_fmt(nxt[1])})", "# a.grad = (0, 0)"]
    if result.batches is not None:
        values[1] += f" · {len(result.batches[k])} of {result.n} points"
    shown = len(CODE_LINES) if phase is None else PHASES[phase][0] + 1
    return [v if i < shown else BLANK for i, v in enumerate(values)]


def animation_figure(x, y, result: FitResult, *, max_frames: int = 200, log_y: bool = True,
                     line_by_line: bool = False, frame_ms: int = 80,
                     title: str | None = None) -> dict[str, Any]:
    """The SGD page's animation as a Plotly figure in plain JSON form (a dict of dicts, lists,
    numbers and strings; arrays as base64 typed arrays), ready to serialise without Plotly's
    per-object validation, which would take longer than computing it.

    Four panels: the points and the current line; the loss so far; the loss surface with the path
    of (a1, a2); the training loop as code with the running line highlighted and the values at this
    step. Frames touch only scatter traces and play in the browser with redraw off.
    `line_by_line` gives each step four frames (predict, loss, backward, update), so fewer steps
    fit in `max_frames`."""
    xs, ys = _as_numpy(x, y)
    f32 = np.float32
    last = result.last
    (a1lo, a1hi), (a2lo, a2hi) = view_window(xs, ys, result)
    a1g, a2g = np.linspace(a1lo, a1hi, 120), np.linspace(a2lo, a2hi, 120)
    zlog = np.log10(loss_surface(xs, ys, a1g, a2g) + 1e-12)         # (120, 120), rows follow a2
    cx, cy = contour_lines(zlog, a1g, a2g)
    best = least_squares(xs, ys)
    clip_hi = DIVERGE_FACTOR * max(float(result.losses[0]), 1.0)
    with np.errstate(invalid="ignore"):
        shown_losses = np.clip(np.nan_to_num(result.losses, nan=np.nan, posinf=clip_hi), 0, clip_hi)
        path = np.clip(result.params, [a1lo, a2lo], [a1hi, a2hi])  # a diverging path is clipped
    xline = np.array([-1.15, 1.15])
    ylo, yhi = float(ys.min()), float(ys.max())
    ypad = (yhi - ylo) * 0.25 + 0.5

    # the frames: (step index k, phase index or None)
    if line_by_line and last > 0:
        ks = range(min(last, max(1, (max_frames - 1) // len(PHASES))))
        plan = [(k, p) for k in ks for p in range(len(PHASES))] + [(len(ks), None)]
    else:
        plan = [(int(k), None) for k in frame_steps(result.steps, last, max_frames)]

    done = shown_losses[: last + 1]
    positive = done[done > 0]
    if log_y:
        lo = math.log10(max(float(positive.min()) if len(positive) else 1e-3, 1e-12))
        hi = math.log10(max(float(done.max()), 10 ** (lo + 1)))
        loss_range = [lo - 0.1 * (hi - lo), hi + 0.08 * (hi - lo)]
    else:
        loss_range = [0, float(done.max()) * 1.08 + 1e-9]
    x_hi = max(plan[-1][0], 1)
    # rows drawn in the trails: every step, or only the frames' steps when steps are skipped, so
    # the figure grows with frames, not with frames × steps
    trail = np.array(sorted({k for k, _ in plan} | {k + 1 for k, p in plan if p is not None}))
    code_y = -np.arange(len(CODE_LINES), dtype=f32)
    empty = np.array([], f32)

    def dynamic(k: int, phase: int | None) -> list[dict]:
        """Traces that change per frame, in the order of dyn_style below."""
        name = None if phase is None else PHASES[phase][1]
        at = k + 1 if name == "update" and k < last else k      # row the line and the dot show
        upto = k if name == "predict" else k + 1                 # loss points drawn: 0..upto-1
        arrow = name in (None, "backward") and k < last
        if result.batches is not None and k < len(result.batches) and k < last:
            idx = result.batches[k]
            bx, by = xs[idx, 0].astype(f32), ys[idx].astype(f32)
        else:
            bx, by = empty, empty
        hl = PHASES[phase][0] if phase is not None else (5 if k < last else 0)
        a_now = result.params[at]
        rows = np.append(trail[trail < at], at)
        lrows = trail[trail < upto]
        return [
            {"x": xline.astype(f32), "y": (a_now[0] * xline + a_now[1]).astype(f32)},
            {"x": bx, "y": by},
            {"x": lrows.astype(f32), "y": shown_losses[lrows].astype(f32)},
            {"x": path[rows, 0].astype(f32), "y": path[rows, 1].astype(f32)},
            {"x": path[at:at + 1, 0].astype(f32), "y": path[at:at + 1, 1].astype(f32)},
            {"x": path[k:k + 2, 0].astype(f32) if arrow else empty,
             "y": path[k:k + 2, 1].astype(f32) if arrow else empty},
            {"x": np.array([-0.005, 0.9], f32), "y": np.array([-hl, -hl], f32)},
            {"x": np.full(len(CODE_LINES), 0.46, f32), "y": code_y,
             "text": _code_values(result, k, phase)},
        ]

    first = dynamic(*plan[0])
    static = [
        {"type": "scatter", "x": xs[:, 0].astype(f32), "y": ys.astype(f32), "mode": "markers",
         "name": "points", "marker": {"color": "#7f8c9b", "size": 6}, "xaxis": "x", "yaxis": "y",
         "hovertemplate": "x=%{x:.3f}<br>y=%{y:.3f}<extra></extra>"},
        # contour lines as a plain scatter trace: Plotly's contour trace vanishes when scatter
        # frames play with redraw off, so the shading is a background image (layout.images)
        {"type": "scatter", "x": cx, "y": cy, "mode": "lines", "name": "equal-loss lines",
         "xaxis": "x3", "yaxis": "y3", "line": {"color": "rgba(40, 60, 90, 0.45)", "width": 0.8},
         "hoverinfo": "skip", "connectgaps": False},
        {"type": "scatter", "x": [float(best[0])], "y": [float(best[1])], "mode": "markers",
         "name": "best line (least squares)", "xaxis": "x3", "yaxis": "y3",
         "marker": {"symbol": "star", "size": 14, "color": "#f5b700",
                    "line": {"color": "black", "width": 1}}},
        {"type": "scatter", "x": np.zeros(len(CODE_LINES), f32), "y": code_y, "text": list(CODE_LINES),
         "mode": "text", "textposition": "middle right", "xaxis": "x4", "yaxis": "y4",
         "textfont": {"family": "monospace", "size": 12.5}, "hoverinfo": "skip", "showlegend": False},
    ]
    dyn_style = [
        {"type": "scatter", "mode": "lines", "name": "current line", "xaxis": "x", "yaxis": "y",
         "line": {"color": "#d62728", "width": 3}},
        {"type": "scatter", "mode": "markers", "name": "this step's mini-batch", "xaxis": "x",
         "yaxis": "y", "marker": {"color": "rgba(0,0,0,0)", "size": 11,
                                  "line": {"color": "#ff7f0e", "width": 2}}},
        {"type": "scatter", "mode": "lines", "name": "loss (all points)", "xaxis": "x2",
         "yaxis": "y2", "line": {"color": "#1f77b4", "width": 2}},
        {"type": "scatter", "mode": "lines+markers", "name": "path of (a1, a2)", "xaxis": "x3",
         "yaxis": "y3", "line": {"color": "#d62728", "width": 1.5}, "marker": {"size": 3}},
        {"type": "scatter", "mode": "markers", "name": "a now", "xaxis": "x3", "yaxis": "y3",
         "marker": {"color": "#d62728", "size": 11, "line": {"color": "white", "width": 1.5}}},
        {"type": "scatter", "mode": "lines", "name": "next step", "xaxis": "x3", "yaxis": "y3",
         "line": {"color": "#ff7f0e", "width": 2.5, "dash": "dot"}},
        {"type": "scatter", "mode": "lines", "xaxis": "x4", "yaxis": "y4", "hoverinfo": "skip",
         "showlegend": False, "line": {"color": "rgba(255, 213, 79, 0.55)", "width": 24}},
        {"type": "scatter", "mode": "text", "textposition": "middle right", "xaxis": "x4",
         "yaxis": "y4", "hoverinfo": "skip", "showlegend": False,
         "textfont": {"family": "monospace", "size": 12.5, "color": "#2e7d32"}},
    ]
    # the highlight bar goes under the code text: order = static points, dynamic, then code on top
    data = [static[0], static[1], static[2]] + [{**s, **d} for s, d in zip(dyn_style, first)] \
        + [static[3]]
    dyn_index = list(range(3, 3 + len(dyn_style)))
    frames, slider_steps = [], []
    for i, (k, phase) in enumerate(plan):
        frames.append({"name": str(i), "data": dynamic(k, phase), "traces": dyn_index})
        label = str(k) if phase is None else f"{k + 1} · {PHASES[phase][1]}"
        slider_steps.append({"label": label, "method": "animate",
                             "args": [[str(i)], {"mode": "immediate", "frame": {"duration": 0, "redraw": False},
                                                 "transition": {"duration": 0}}]})
    play = {"frame": {"duration": int(frame_ms), "redraw": False}, "fromcurrent": True,
            "transition": {"duration": 0}, "mode": "immediate"}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    row1, code_top = [0.5, 0.95], 0.28            # paper heights: charts on top, code below
    titles = [(0.0, "points, current line" + (", ○ batch" if result.batches is not None else "")),
              (0.36, "loss on all points, so far"),
              (0.71, "loss surface, path of a, ★ best")]
    layout = {
        "height": 820,
        "margin": {"l": 50, "r": 15, "t": 36, "b": 10},
        "title": {"text": title or "", "x": 0.0, "xanchor": "left", "font": {"size": 15}},
        "showlegend": False,
        "images": [{"source": surface_png(zlog), "xref": "x3", "yref": "y3", "x": a1lo, "y": a2hi,
                    "sizex": a1hi - a1lo, "sizey": a2hi - a2lo, "sizing": "stretch",
                    "layer": "below"}],
        "annotations": [{"text": f"<b>{t}</b>", "x": x0, "y": row1[1] + 0.01, "xref": "paper",
                         "yref": "paper", "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                         "font": {"size": 13}} for x0, t in titles]
        + [{"text": "<b>the training loop</b> (highlighted: the line running; green: its values "
                    "at this step)", "x": 0.0, "y": code_top + 0.01, "xref": "paper",
            "yref": "paper", "xanchor": "left", "yanchor": "bottom", "showarrow": False,
            "font": {"size": 13}}],
        "xaxis": {"domain": [0, 0.29], "anchor": "y", "range": [-1.15, 1.15], "title": {"text": "x"}},
        "yaxis": {"domain": row1, "anchor": "x", "range": [ylo - ypad, yhi + ypad],
                  "title": {"text": "y", "standoff": 2}},
        "xaxis2": {"domain": [0.36, 0.64], "anchor": "y2", "range": [-0.5, x_hi + 0.5],
                   "title": {"text": "step"}},
        "yaxis2": {"domain": row1, "anchor": "x2", "type": "log" if log_y else "linear",
                   "range": loss_range, "title": {"text": "loss (MSE)", "standoff": 2},
                   **({"dtick": 1} if log_y and loss_range[1] - loss_range[0] > 1.5 else {})},
        "xaxis3": {"domain": [0.71, 1.0], "anchor": "y3", "range": [a1lo, a1hi],
                   "title": {"text": "a1 (slope)"}, "showgrid": False, "zeroline": False},
        "yaxis3": {"domain": row1, "anchor": "x3", "range": [a2lo, a2hi],
                   "title": {"text": "a2 (intercept)", "standoff": 2}, "showgrid": False,
                   "zeroline": False},
        "xaxis4": {"domain": [0, 1.0], "anchor": "y4", "range": [-0.01, 1.0], "visible": False,
                   "fixedrange": True},
        "yaxis4": {"domain": [0, code_top], "anchor": "x4", "range": [-len(CODE_LINES) + 0.5, 0.5],
                   "visible": False, "fixedrange": True},
        "updatemenus": [{
            "type": "buttons", "direction": "left", "x": 0.0, "y": 0.405, "xanchor": "left",
            "yanchor": "top", "pad": {"t": 0, "r": 10}, "showactive": False,
            "buttons": [{"label": "▶ Play", "method": "animate", "args": [None, play]},
                        {"label": "❚❚ Pause", "method": "animate", "args": [[None], pause]}],
        }],
        "sliders": [{
            "active": 0, "x": 0.24, "y": 0.44, "len": 0.76, "xanchor": "left", "yanchor": "top",
            "pad": {"t": 0, "b": 0}, "currentvalue": {"prefix": "step " if line_by_line else "steps done: ", "visible": True,
                                                      "xanchor": "left"},
            "transition": {"duration": 0}, "steps": slider_steps,
        }],
    }
    return _typed_arrays({"data": data, "layout": layout, "frames": frames})


def contour_lines(z: np.ndarray, xv: np.ndarray, yv: np.ndarray,
                  levels: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Equal-value lines of z[j, i] (at xv[i], yv[j]) as one polyline with NaN gaps between pieces."""
    from skimage.measure import find_contours

    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    xs, ys = [], []
    for level in np.linspace(lo, hi, levels + 2)[1:-1]:
        for piece in find_contours(z, level):                 # (m, 2) of (row, col) indices
            xs += [np.interp(piece[:, 1], np.arange(len(xv)), xv), [np.nan]]
            ys += [np.interp(piece[:, 0], np.arange(len(yv)), yv), [np.nan]]
    if not xs:
        return np.array([], np.float32), np.array([], np.float32)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def surface_png(z: np.ndarray) -> str:
    """z[j, i] (rows follow the vertical axis upwards) as a PNG data URI in SURFACE_COLORS."""
    import io

    from PIL import Image

    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    t = (z - lo) / (hi - lo) if hi > lo else np.zeros_like(z)
    stops = np.array([p for p, _ in SURFACE_COLORS])
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for _, c in SURFACE_COLORS], float)
    img = np.stack([np.interp(t, stops, rgb[:, k]) for k in range(3)], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(np.flipud(img).round().astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def typed_array(values) -> dict[str, str]:
    """A float32 array in Plotly's compact JSON form: base64 of its little-endian bytes."""
    a = np.ascontiguousarray(values, dtype="<f4")
    spec = {"dtype": "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ",".join(str(d) for d in a.shape)
    return spec


def decode_typed_array(spec) -> np.ndarray:
    """The inverse of `typed_array` (plain lists pass through as arrays)."""
    if isinstance(spec, dict) and "bdata" in spec:
        a = np.frombuffer(base64.b64decode(spec["bdata"]), dtype="<" + spec["dtype"]).copy()
        return a.reshape([int(d) for d in spec["shape"].split(",")]) if "shape" in spec else a
    return np.asarray(spec)


def _typed_arrays(value):
    """Every numpy array inside a figure dict -> a typed array, so the dict is plain JSON."""
    if isinstance(value, np.ndarray):
        return typed_array(value)
    if isinstance(value, dict):
        return {k: _typed_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed_arrays(v) for v in value]
    return value


def figure_json_size(fig: dict[str, Any]) -> int:
    """Bytes of the figure's JSON (what the browser receives for it)."""
    import json

    return len(json.dumps(fig, separators=(",", ":")).encode())
