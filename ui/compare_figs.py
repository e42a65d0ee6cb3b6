"""Plotly figures for runs side by side (Train page, section 7), as plain dicts: one colour per
run, training solid and validation dashed."""
from __future__ import annotations

import math
from typing import Sequence

from ui.figures import plotly_text

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
FONT = {"size": 13}


def _layout(title: str, ytitle: str, **extra: object) -> dict:
    return {"title": {"text": title, "font": {"size": 15}}, "height": 340, "font": FONT,
            "margin": {"l": 60, "r": 20, "t": 44, "b": 48}, "hovermode": "x unified",
            "legend": {"orientation": "h", "y": -0.25},
            "xaxis": {"title": {"text": "epoch"}, "dtick": 1},
            "yaxis": {"title": {"text": ytitle}, **extra}}


def _clean(values: Sequence[float]) -> list[float | None]:
    return [v if v is not None and math.isfinite(v) else None for v in values]


def loss_figure(names: Sequence[str], curves: Sequence[dict]) -> dict:
    """Training (solid) and validation (dashed) loss per epoch of each run."""
    data = []
    for k, (name, c) in enumerate(zip(names, curves)):
        colour, label = COLOURS[k % len(COLOURS)], plotly_text(name)
        data.append({"type": "scatter", "mode": "lines+markers", "x": c["epoch"],
                     "y": _clean(c["train_loss"]), "name": f"{label} · train",
                     "legendgroup": str(k), "line": {"color": colour}})
        data.append({"type": "scatter", "mode": "lines+markers", "x": c["epoch"],
                     "y": _clean(c["valid_loss"]), "name": f"{label} · valid",
                     "legendgroup": str(k), "line": {"color": colour, "dash": "dash"}})
    return {"data": data, "layout": _layout("Loss per epoch (train solid, valid dashed)", "loss",
                                            type="log")}


def error_figure(names: Sequence[str], curves: Sequence[dict]) -> dict:
    """Validation error rate per epoch of each run."""
    data = [{"type": "scatter", "mode": "lines+markers", "x": c["epoch"],
             "y": _clean(c["error_rate"]), "name": plotly_text(name),
             "line": {"color": COLOURS[k % len(COLOURS)]}}
            for k, (name, c) in enumerate(zip(names, curves))]
    return {"data": data, "layout": _layout("Error rate per epoch (validation)", "error rate",
                                            tickformat=".0%", rangemode="tozero")}


__all__ = ["COLOURS", "loss_figure", "error_figure"]
