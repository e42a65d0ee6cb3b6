"""Fit and overfit on a problem small enough to see whole: polynomials through noisy points.

Points come from a smooth curve plus noise and are split, with a seed, into training points (the
fit sees them) and held-out points (it never does): the validation set in miniature. A polynomial
of degree d has d + 1 coefficients; it is fitted by least squares, optionally with weight decay,

    minimise  mean((X @ w - y)²) + wd · Σ_{k ≥ 1} w_k²          X[i, k] = x_i ** k   (N, d + 1)

which is ridge regression: the same penalty on the weights' size that weight decay adds in the
optimiser (the constant term is not penalised, as a network's biases are not). It is solved as
one least-squares problem, stacking sqrt(N · wd) · I under X (numpy.linalg.lstsq: stable even
where X's columns are nearly alike at degree 15). With wd = 0 it is numpy.polyfit's answer.

Training loss falls with every extra degree; held-out loss falls, then rises again: the U shape.
Low degrees underfit (too stiff for the curve), high degrees overfit (they bend to the noise of
the few training points); weight decay tames the wiggles of a high degree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DEGREE = 15
CURVES = ("sine", "cubic")


class OverfitError(ValueError):
    """Settings the fit cannot use; the message is a sentence."""


def true_curve(x: np.ndarray, curve: str = "sine") -> np.ndarray:
    """The curve the points come from: sin(πx), or a cubic with one bump, on x in [-1, 1]."""
    if curve == "sine":
        return np.sin(np.pi * x)
    if curve == "cubic":
        return 1.5 * x ** 3 - x + 0.3
    raise OverfitError(f"Unknown curve {curve!r}; choose one of {', '.join(CURVES)}.")


@dataclass(frozen=True)
class Points:
    """Training and held-out points, each (N,) float64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray


def make_points(n: int = 30, noise: float = 0.3, seed: int = 0, valid_pct: float = 0.3,
                curve: str = "sine") -> Points:
    """n points with x uniform in [-1, 1] and y = curve(x) + noise · N(0, 1), split by the seed:
    round(n · valid_pct) held out (at least one of each kind)."""
    if not 4 <= n <= 10_000:
        raise OverfitError(f"Use 4 to 10,000 points, not {n}.")
    if not 0 < valid_pct < 1 or noise < 0:
        raise OverfitError("The held-out share must be between 0 and 1 and the noise not negative.")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = true_curve(x, curve) + noise * rng.standard_normal(n)
    n_valid = min(max(1, round(n * valid_pct)), n - 1)
    order = rng.permutation(n)
    valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    return Points(x[train], y[train], x[valid], y[valid])


def design(x: np.ndarray, degree: int) -> np.ndarray:
    """X[i, k] = x_i ** k for k = 0..degree: (N, degree + 1)."""
    return np.vander(np.asarray(x, float), degree + 1, increasing=True)


def fit_poly(x: np.ndarray, y: np.ndarray, degree: int, wd: float = 0.0) -> np.ndarray:
    """Coefficients w[0..degree] (constant first) minimising mean((X w - y)²) + wd · Σ_{k≥1} w_k²."""
    if not 0 <= degree <= MAX_DEGREE:
        raise OverfitError(f"Use a degree from 0 to {MAX_DEGREE}, not {degree}.")
    if wd < 0 or not np.isfinite(wd):
        raise OverfitError("Weight decay must be a number of 0 or more.")
    X, y = design(x, degree), np.asarray(y, float)
    if wd > 0:
        penalty = np.sqrt(len(y) * wd) * np.eye(degree + 1)[1:]     # (degree, degree + 1)
        X, y = np.vstack([X, penalty]), np.concatenate([y, np.zeros(degree)])
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    return w


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The polynomial with coefficients w (constant first) at x."""
    return design(x, len(w) - 1) @ w


def mse(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the polynomial w on the points (x, y)."""
    return float(np.mean((predict(w, x) - np.asarray(y, float)) ** 2))


@dataclass(frozen=True)
class DegreeCurve:
    """Training and held-out loss for each degree (the U shape), and the best held-out degree."""

    degrees: np.ndarray      # (D,)
    train: np.ndarray        # (D,) training MSE
    valid: np.ndarray        # (D,) held-out MSE

    @property
    def best(self) -> int:
        return int(self.degrees[int(np.argmin(self.valid))])


def degree_curve(points: Points, wd: float = 0.0, max_degree: int = MAX_DEGREE) -> DegreeCurve:
    """Fit every degree 1..max_degree with weight decay wd and measure both losses."""
    degrees = np.arange(1, max_degree + 1)
    train, valid = [], []
    for d in degrees:
        w = fit_poly(points.x_train, points.y_train, int(d), wd)
        train.append(mse(w, points.x_train, points.y_train))
        valid.append(mse(w, points.x_valid, points.y_valid))
    return DegreeCurve(degrees, np.array(train), np.array(valid))


def verdict(curve: DegreeCurve, degree: int) -> str:
    """"underfit" | "good" | "overfit" for a degree, read from its place on the U: left of the
    best held-out degree and clearly worse than it is underfitting, right of it and clearly worse
    is overfitting (clearly: held-out loss more than 1.5 times the best)."""
    i = int(np.searchsorted(curve.degrees, degree))
    best_i = int(np.argmin(curve.valid))
    if curve.valid[i] <= 1.5 * curve.valid[best_i]:
        return "good"
    return "underfit" if i < best_i else "overfit"


__all__ = ["MAX_DEGREE", "CURVES", "OverfitError", "Points", "true_curve", "make_points", "design",
           "fit_poly", "predict", "mse", "DegreeCurve", "degree_curve", "verdict"]
