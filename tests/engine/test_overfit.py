"""engine.overfit: the polynomial fits equal numpy's own least squares; the U shape and weight
decay behave as the Fit and overfit page says."""
from __future__ import annotations

import numpy as np
import pytest

from engine import overfit


@pytest.fixture
def points():
    return overfit.make_points(n=30, noise=0.3, seed=0, valid_pct=0.3)


@pytest.mark.parametrize("degree", [1, 2, 3, 5, 8])
def test_without_weight_decay_the_fit_is_numpy_polyfit(points, degree):
    w = overfit.fit_poly(points.x_train, points.y_train, degree)
    ref = np.polyfit(points.x_train, points.y_train, degree)          # highest power first
    np.testing.assert_allclose(w, ref[::-1], rtol=1e-6, atol=1e-8)
    xs = np.linspace(-1, 1, 50)
    np.testing.assert_allclose(overfit.predict(w, xs), np.polyval(ref, xs), atol=1e-8)


@pytest.mark.parametrize("degree", [10, 15])
def test_high_degrees_predict_as_polyfit_does(points, degree):
    """At high degrees the coefficients are ill-conditioned, so compare the curves."""
    w = overfit.fit_poly(points.x_train, points.y_train, degree)
    ref = np.polyfit(points.x_train, points.y_train, degree)
    np.testing.assert_allclose(overfit.predict(w, points.x_train),
                               np.polyval(ref, points.x_train), atol=1e-6)


@pytest.mark.parametrize("wd", [1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("degree", [3, 15])
def test_weight_decay_is_ridge_regression_by_lstsq(points, wd, degree):
    """minimise mean((Xw - y)²) + wd Σ_{k≥1} w_k²: the normal equations solved by lstsq."""
    X = np.vander(points.x_train, degree + 1, increasing=True)
    n = len(points.y_train)
    penalty = np.diag([0.0] + [1.0] * degree)
    ref, *_ = np.linalg.lstsq(X.T @ X / n + wd * penalty, X.T @ points.y_train / n, rcond=None)
    w = overfit.fit_poly(points.x_train, points.y_train, degree, wd)
    np.testing.assert_allclose(overfit.predict(w, points.x_train),
                               overfit.predict(ref, points.x_train), atol=1e-6)
    # ... and it is the minimum of that objective: nudging any coefficient makes it worse.
    def objective(v):
        return np.mean((X @ v - points.y_train) ** 2) + wd * np.sum(v[1:] ** 2)
    rng = np.random.default_rng(1)
    for _ in range(5):
        assert objective(w) <= objective(w + 1e-4 * rng.standard_normal(len(w))) + 1e-12


def test_mse_is_the_mean_squared_error(points):
    w = overfit.fit_poly(points.x_train, points.y_train, 2)
    expected = np.mean((np.polyval(w[::-1], points.x_valid) - points.y_valid) ** 2)
    assert overfit.mse(w, points.x_valid, points.y_valid) == pytest.approx(expected)


def test_points_are_seeded_and_split():
    a = overfit.make_points(40, 0.2, seed=3, valid_pct=0.25)
    b = overfit.make_points(40, 0.2, seed=3, valid_pct=0.25)
    c = overfit.make_points(40, 0.2, seed=4, valid_pct=0.25)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert len(a.x_valid) == 10 and len(a.x_train) == 30
    assert not set(a.x_train) & set(a.x_valid)
    zero = overfit.make_points(40, 0.0, seed=3, valid_pct=0.25)
    np.testing.assert_allclose(zero.y_train, np.sin(np.pi * zero.x_train))


def test_the_u_shape_and_weight_decay_taming_it(points):
    curve = overfit.degree_curve(points)
    # Training loss never rises with the degree (a higher degree can always copy a lower one).
    assert np.all(np.diff(curve.train) <= 1e-9)
    # Held-out loss: falls to its best, then rises far above it at degree 15.
    assert 2 <= curve.best <= 8
    assert curve.valid[-1] > 10 * curve.valid.min()
    assert overfit.verdict(curve, 1) == "underfit" and overfit.verdict(curve, 15) == "overfit"
    assert overfit.verdict(curve, curve.best) == "good"
    tamed = overfit.degree_curve(points, wd=1e-4)
    assert tamed.valid[-1] < 2 * tamed.valid.min()          # degree 15 stays near the best
    w_wild = overfit.fit_poly(points.x_train, points.y_train, 15)
    w_tame = overfit.fit_poly(points.x_train, points.y_train, 15, 1e-4)
    assert np.abs(w_tame).max() < np.abs(w_wild).max() / 10


@pytest.mark.parametrize("call", [lambda: overfit.fit_poly(np.zeros(5), np.zeros(5), 16),
                                  lambda: overfit.fit_poly(np.zeros(5), np.zeros(5), 2, -1.0),
                                  lambda: overfit.make_points(2),
                                  lambda: overfit.make_points(30, valid_pct=1.0),
                                  lambda: overfit.true_curve(np.zeros(2), "zigzag")])
def test_bad_settings_are_sentences(call):
    with pytest.raises(overfit.OverfitError):
        call()
