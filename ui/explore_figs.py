"""Plotly figures of the Explorer: the clickable confusion matrix and a prediction's probabilities.
Pure functions: arrays in, a Plotly dict out (no Streamlit calls)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.interpret import row_normalise
from ui.figures import plotly_text, plotly_texts


def cm_figure(cm: np.ndarray, classes: Sequence[str], rows: bool) -> dict:
    """Actual (rows) × predicted (columns); an invisible marker on every cell takes the click,
    because Plotly heatmaps cannot be selected. rows: show each row's shares instead of counts."""
    n = len(classes)
    z = row_normalise(cm) if rows else cm.astype(float)            # (n, n)
    text = [[f"{v:.0%}" if rows else f"{int(v)}" for v in r] for r in z]
    names = plotly_texts(classes)
    heat = {"type": "heatmap", "z": z.tolist(), "x": list(range(n)), "y": list(range(n)),
            "text": text, "texttemplate": "%{text}" if n <= 20 else "", "colorscale": "Cividis",
            "reversescale": False, "showscale": True, "hoverinfo": "skip", "xgap": 1, "ygap": 1,
            "colorbar": {"title": {"text": "share of row" if rows else "images"}, "thickness": 12}}
    gx, gy = np.meshgrid(np.arange(n), np.arange(n))
    faint = {"marker": {"opacity": 0.01}}
    picker = {"type": "scatter", "mode": "markers", "x": gx.ravel().tolist(), "y": gy.ravel().tolist(),
              "customdata": [[names[a], names[p], int(cm[a, p])] for a, p in
                             zip(gy.ravel(), gx.ravel())],
              "hovertemplate": "actual %{customdata[0]}, predicted %{customdata[1]}: "
                               "%{customdata[2]} images<extra></extra>",
              "marker": {"symbol": "square", "size": max(8, min(40, 420 // max(n, 1))),
                         "opacity": 0.01, "color": "#000"},
              "selected": faint, "unselected": faint, "showlegend": False}
    side = min(760, max(380, 34 * n + 160))
    ticks = {"tickmode": "array", "tickvals": list(range(n)), "ticktext": names}
    layout = {"height": side, "dragmode": False, "clickmode": "event+select",
              "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
              "xaxis": {"title": {"text": "Predicted"}, "side": "bottom", **ticks},
              "yaxis": {"title": {"text": "Actual"}, "autorange": "reversed", **ticks}}
    return {"data": [heat, picker], "layout": layout}


def prob_figure(classes: Sequence[str], probs: np.ndarray) -> dict:
    """Horizontal bars of the 15 most likely classes, the most likely on top and highlighted."""
    order = np.argsort(-probs, kind="stable")[:15][::-1]
    return {"data": [{"type": "bar", "orientation": "h", "x": [float(probs[i]) for i in order],
                      "y": [plotly_text(classes[i]) for i in order],
                      "marker": {"color": ["#fde725" if i == order[-1] else "#3b496c" for i in order]},
                      "texttemplate": "%{x:.1%}", "textposition": "outside",
                      "hovertemplate": "%{y}: %{x:.2%}<extra></extra>"}],
            "layout": {"height": 60 + 26 * len(order), "margin": {"l": 10, "r": 40, "t": 10, "b": 30},
                       "xaxis": {"range": [0, 1.15], "tickformat": ".0%", "title": {"text": "probability"}},
                       # category: class names such as "0".."9" must not become a number axis
                       "yaxis": {"automargin": True, "type": "category"}}}
