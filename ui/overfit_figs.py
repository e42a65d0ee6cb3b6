"""Plotly figures of the Fit and overfit page, as plain dicts: the points with the fitted
polynomial, and training / held-out loss against the degree (the U shape)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

BLUE, ORANGE, GREEN, GREY, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#888888", "#d62728"
FONT = {"size": 13}


def _layout(title: str, **extra: object) -> dict:
    return {"title": {"text": title, "font": {"size": 15}}, "height": 380, "font": FONT,
            "margin": {"l": 60, "r": 20, "t": 44, "b": 48}, "hovermode": "closest",
            "legend": {"orientation": "h", "y": -0.2}, **extra}


def fit_figure(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray,
               y_valid: np.ndarray, xs: np.ndarray, fitted: np.ndarray,
               truth: np.ndarray | None, degree: int) -> dict:
    """Training points (filled), held-out points (hollow), the fitted curve and the true one.
    The y range is the points' own (plus a margin), so a wild fit leaves the picture rather
    than squashing it."""
    data = [{"type": "scatter", "mode": "markers", "x": x_train.tolist(), "y": y_train.tolist(),
             "name": "training points", "marker": {"color": BLUE, "size": 8}},
            {"type": "scatter", "mode": "markers", "x": x_valid.tolist(), "y": y_valid.tolist(),
             "name": "held-out points", "marker": {"color": ORANGE, "size": 9, "symbol": "circle-open",
                                                   "line": {"width": 2}}},
            {"type": "scatter", "mode": "lines", "x": xs.tolist(), "y": fitted.tolist(),
             "name": f"fitted polynomial, degree {degree}", "line": {"color": RED, "width": 2.5}}]
    if truth is not None:
        data.append({"type": "scatter", "mode": "lines", "x": xs.tolist(), "y": truth.tolist(),
                     "name": "the true curve", "line": {"color": GREEN, "dash": "dot"}})
    ys = np.concatenate([y_train, y_valid])
    pad = 0.25 * float(ys.max() - ys.min() + 1e-9)
    return {"data": data, "layout": _layout(
        "The points and the fitted curve",
        xaxis={"title": {"text": "x"}, "range": [-1.05, 1.05]},
        yaxis={"title": {"text": "y"}, "range": [float(ys.min()) - pad, float(ys.max()) + pad]})}


def degree_figure(degrees: Sequence[int], train: Sequence[float], valid: Sequence[float],
                  degree: int, best: int, log_y: bool = True) -> dict:
    """Training and held-out mean squared error against the degree, the chosen degree marked."""
    data = [{"type": "scatter", "mode": "lines+markers", "x": list(degrees), "y": list(train),
             "name": "training loss", "line": {"color": BLUE}},
            {"type": "scatter", "mode": "lines+markers", "x": list(degrees), "y": list(valid),
             "name": "held-out loss", "line": {"color": ORANGE}}]
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": degree, "x1": degree, "y0": 0,
               "y1": 1, "line": {"color": RED, "dash": "dot"}}]
    notes = [{"x": best, "y": 0.98, "xref": "x", "yref": "paper", "yanchor": "top",
              "text": f"best held-out: {best}", "showarrow": False, "font": {"color": ORANGE}}]
    return {"data": data, "layout": _layout(
        "Loss against the degree (mean squared error)", shapes=shapes, annotations=notes,
        xaxis={"title": {"text": "degree of the polynomial"}, "dtick": 1,
               "range": [0.5, max(degrees) + 0.5]},
        yaxis={"title": {"text": "loss" + (" (log scale)" if log_y else "")},
               "type": "log" if log_y else "linear"})}


__all__ = ["fit_figure", "degree_figure"]
