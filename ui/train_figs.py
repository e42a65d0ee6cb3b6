"""Plotly figures of the Train page, as plain dicts (building go.Figure objects costs more than the
training step they report on, and the page redraws them every second while a job runs)."""
from __future__ import annotations

import math
from typing import Any, Sequence

from ui.figures import plotly_texts

BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#888888"
MARKER_COLOURS = {"valley": GREEN, "steep": ORANGE, "minimum": RED, "slide": "#9467bd"}
FONT = {"size": 13}


def _layout(title: str, height: int, **extra: Any) -> dict:
    return {"title": {"text": title, "font": {"size": 15}}, "height": height,
            "margin": {"l": 60, "r": 20, "t": 44, "b": 48}, "font": FONT,
            "legend": {"orientation": "h", "y": -0.22}, "hovermode": "closest", **extra}


def _finite(xs: Sequence[float]) -> list[float | None]:
    return [x if x is not None and math.isfinite(x) else None for x in xs]


def lr_find_figure(lrs: Sequence[float], losses: Sequence[float],
                   suggestions: dict[str, float | None] | None = None, *,
                   chosen: float | None = None, running: bool = False) -> dict:
    """Smoothed loss against learning rate (log x), with a labelled marker per suggestion rule;
    every point is clickable (the page reads the clicked x as the new learning rate)."""
    data: list[dict] = [{"type": "scatter", "mode": "lines+markers", "x": list(lrs),
                         "y": _finite(losses), "name": "loss (smoothed)",
                         "line": {"color": BLUE, "width": 2}, "marker": {"size": 4, "color": BLUE},
                         "hovertemplate": "lr %{x:.2e}<br>loss %{y:.4f}<extra>click to use</extra>"}]
    ys = [v for v in _finite(losses) if v is not None]
    if suggestions and lrs:
        import numpy as np
        log_lrs = np.log(np.asarray(lrs, float))
        # Rules that agree share one marker and one label (overlapping labels are unreadable).
        merged: dict[float, list[str]] = {}
        for name, lr in suggestions.items():
            if lr is not None and math.isfinite(lr) and lr > 0:
                merged.setdefault(float(f"{lr:.3g}"), []).append(name)
        for k, (lr, names) in enumerate(sorted(merged.items())):
            name = " = ".join(names)
            y = float(np.interp(math.log(lr), log_lrs, np.nan_to_num(np.asarray(losses, float),
                                                                      nan=max(ys or [0]))))
            data.append({"type": "scatter", "mode": "markers+text", "x": [lr], "y": [y],
                         "name": f"{name} {lr:.1e}", "text": [f"{name}<br>{lr:.1e}"],
                         # neighbours alternate above and below so their labels do not collide
                         "textposition": "top left" if k % 2 == 0 else "bottom right",
                         "marker": {"size": 13, "color": MARKER_COLOURS.get(names[0], GREY),
                                    "line": {"width": 1, "color": "white"}},
                         "hovertemplate": f"{name}: lr %{{x:.2e}}<extra>click to use</extra>"})
    shapes = []
    if chosen:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": chosen, "x1": chosen,
                       "y0": 0, "y1": 1, "line": {"color": GREY, "dash": "dot"}})
    yaxis: dict = {"title": "loss"}
    if len(ys) > 3:
        # The curve shoots up at the end; keep the interesting part readable.
        lo, hi = min(ys), max(ys[: max(3, len(ys) * 9 // 10)])
        yaxis["range"] = [lo - 0.05 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9)]
    title = "LR finder — loss vs learning rate" + (" (running…)" if running else "")
    lay = _layout(title, 380, xaxis={"type": "log", "title": "learning rate (log scale)",
                                     "exponentformat": "e"}, yaxis=yaxis, shapes=shapes,
                  clickmode="event+select", dragmode=False)
    if chosen:
        lay["annotations"] = [{"x": math.log10(chosen), "y": 1, "yref": "paper", "xref": "x",
                               "text": f"chosen {chosen:.1e}", "showarrow": False,
                               "yanchor": "bottom", "font": {"color": GREY}}]
    return {"data": data, "layout": lay}


def batch_loss_figure(batches: Sequence[dict], total_steps: int | None = None) -> dict:
    """Training loss of every batch (faint) and its smoothed value, against the step."""
    steps = list(range(1, len(batches) + 1))
    data = [{"type": "scatter", "mode": "lines", "x": steps, "y": _finite([b["loss"] for b in batches]),
             "name": "batch loss", "line": {"color": BLUE, "width": 1}, "opacity": 0.35},
            {"type": "scatter", "mode": "lines", "x": steps,
             "y": _finite([b["smooth_loss"] for b in batches]), "name": "smoothed",
             "line": {"color": BLUE, "width": 2.5}}]
    xaxis: dict = {"title": "step (batch)"}
    if total_steps:
        xaxis["range"] = [0, total_steps]
    return {"data": data, "layout": _layout("Training loss per batch", 320, xaxis=xaxis,
                                            yaxis={"title": "loss", "rangemode": "tozero"})}


def epoch_figure(rows: Sequence[dict], total_epochs: int | None = None) -> dict:
    """Train loss, validation loss (left axis) and error rate (right axis) per epoch."""
    x = list(range(len(rows)))
    data = [{"type": "scatter", "mode": "lines+markers", "x": x,
             "y": _finite([r["train_loss"] for r in rows]), "name": "train_loss",
             "line": {"color": BLUE}},
            {"type": "scatter", "mode": "lines+markers", "x": x,
             "y": _finite([r["valid_loss"] for r in rows]), "name": "valid_loss",
             "line": {"color": ORANGE}},
            {"type": "scatter", "mode": "lines+markers", "x": x,
             "y": _finite([r["error_rate"] for r in rows]), "name": "error_rate (right)",
             "line": {"color": RED, "dash": "dash"}, "yaxis": "y2"}]
    xaxis: dict = {"title": "epoch", "dtick": 1}
    if total_epochs:
        xaxis["range"] = [-0.3, max(total_epochs - 0.7, 0.3)]
    return {"data": data, "layout": _layout(
        "Per epoch: losses and error rate", 320, xaxis=xaxis,
        yaxis={"title": "loss", "rangemode": "tozero"},
        yaxis2={"title": "error rate", "overlaying": "y", "side": "right", "tickformat": ".0%",
                "rangemode": "tozero", "showgrid": False})}


def schedule_figure(lrs: Sequence[Sequence[float]], moms: Sequence[float], n_batches: int,
                    group_names: Sequence[str] | None = None, done_steps: int = 0) -> dict:
    """The one-cycle learning rate of each layer group (and Adam's beta1) for every step."""
    steps = list(range(len(moms)))
    n_groups = len(lrs[0]) if len(lrs) else 1
    names = list(group_names or [f"group {i}" for i in range(n_groups)])
    data = []
    for g in range(n_groups):
        data.append({"type": "scatter", "mode": "lines", "x": steps, "y": [float(r[g]) for r in lrs],
                     "name": f"lr {names[g]}", "line": {"width": 2 if g == n_groups - 1 else 1}})
    data.append({"type": "scatter", "mode": "lines", "x": steps, "y": [float(m) for m in moms],
                 "name": "momentum (β1, right)", "yaxis": "y2", "line": {"color": GREY, "dash": "dot"}})
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": e * n_batches, "x1": e * n_batches,
               "y0": 0, "y1": 1, "line": {"color": "#dddddd", "width": 1}}
              for e in range(1, max(1, len(steps) // max(n_batches, 1)))]
    if done_steps:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": 0, "x1": done_steps,
                       "y0": 0, "y1": 1, "fillcolor": "rgba(31,119,180,0.08)", "line": {"width": 0}})
    return {"data": data, "layout": _layout(
        "Learning-rate schedule (one-cycle)", 280, shapes=shapes,
        xaxis={"title": "step (grey lines: epoch ends)"},
        yaxis={"title": "learning rate", "exponentformat": "e"},
        yaxis2={"title": "β1", "overlaying": "y", "side": "right", "showgrid": False,
                "range": [0.8, 1.0]})}


def counts_figure(classes: Sequence[str], train: Sequence[int], valid: Sequence[int]) -> dict:
    """Images per class, training and validation stacked (class names shown as written)."""
    names = plotly_texts(classes)
    return {"data": [{"type": "bar", "x": names, "y": list(train), "name": "training",
                      "marker": {"color": BLUE}},
                     {"type": "bar", "x": names, "y": list(valid), "name": "validation",
                      "marker": {"color": ORANGE}}],
            "layout": _layout("Images per class", 300, barmode="stack",
                              xaxis={"title": "class", "type": "category"},
                              yaxis={"title": "images"})}


def fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m:02d}:{s:02d}"


def epoch_table(rows: Sequence[dict]) -> dict[str, list]:
    """The lesson's table: epoch, train_loss, valid_loss, error_rate, time (stage when fine-tuning)."""
    out: dict[str, list] = {"epoch": [], "train_loss": [], "valid_loss": [], "error_rate": [],
                            "time": []}
    stages = {r.get("stage") for r in rows}
    if len(stages) > 1:
        out = {"stage": [], **out}
    for r in rows:
        if "stage" in out:
            out["stage"].append(r.get("stage", ""))
        out["epoch"].append(int(r["epoch"]))
        for k in ("train_loss", "valid_loss", "error_rate"):
            v = r.get(k)
            out[k].append(f"{v:.6f}" if v is not None and math.isfinite(v) else "nan")
        out["time"].append(fmt_time(r.get("seconds", 0.0)))
    return out
