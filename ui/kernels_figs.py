"""The Kernel Playground's figures: small matrices with their values written in, the enlarged view
around a pixel, and the animation of a kernel being learned. Numbers in, a figure out; no Streamlit.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from ui.figures import ReadyFigure

#: 0 black, 255 white, written out: these figures go to plotly.js as plain JSON, and plotly.js's
#: own "Greys" runs the other way from plotly.py's (with reversescale, bright pixels came out dark).
BLACK_WHITE = [[0.0, "#000000"], [1.0, "#ffffff"]]
BLUE_ORANGE = [[0.0, "#2166ac"], [0.25, "#67a9cf"], [0.5, "#f7f7f7"], [0.75, "#f4a55e"],
               [1.0, "#b35806"]]


def _axis(**kw) -> dict:
    return {"visible": False, **kw}


def matrix_figure(values: np.ndarray, *, title: str = "", fmt: str = ".3g", height: int = 220,
                  symmetric: bool = True, highlight_centre: bool = False,
                  grey: bool = False) -> ReadyFigure:
    """A small heatmap with each cell's value written in it (kernels, patches, products).

    Built as plain Plotly JSON (see ReadyFigure): a page redraws several of these per edit.
    """
    v = np.asarray(values, dtype=float)
    m = float(np.nanmax(np.abs(v))) if v.size and np.isfinite(v).any() else 1.0
    m = m or 1.0
    scale = {"colorscale": BLACK_WHITE, "zmin": 0, "zmax": 255} if grey else {
        "colorscale": BLUE_ORANGE, **({"zmin": -m, "zmax": m} if symmetric else {})}
    trace = {"type": "heatmap", "z": v.tolist(), "text": [[format(x, fmt) for x in row] for row in v],
             "texttemplate": "%{text}", "showscale": False, "hoverinfo": "skip", "xgap": 2, "ygap": 2,
             **scale}
    shapes = []
    if highlight_centre:
        c = v.shape[0] // 2
        shapes.append({"type": "rect", "x0": c - 0.5, "x1": c + 0.5, "y0": c - 0.5, "y1": c + 0.5,
                       "line": {"color": "#111", "width": 3}})
    layout = {"height": height, "shapes": shapes, "xaxis": _axis(),
              "yaxis": _axis(autorange="reversed", scaleanchor="x"),
              "margin": {"l": 4, "r": 4, "t": 30 if title else 4, "b": 4}}
    if title:
        layout["title"] = {"text": title, "font": {"size": 14}}
    return ReadyFigure({"data": [trace], "layout": layout})


def activation_figure(height: int = 240) -> ReadyFigure:
    """ReLU and sigmoid over −6…6 on the same axes."""
    x = np.linspace(-6, 6, 121)
    lines = [("ReLU: max(0, x)", np.maximum(x, 0), "#b35806"),
             ("sigmoid: 1 / (1 + e⁻ˣ)", 1 / (1 + np.exp(-x)), "#2166ac")]
    data = [{"type": "scatter", "mode": "lines", "x": x.round(3).tolist(), "y": y.round(4).tolist(),
             "name": name, "line": {"color": colour, "width": 3}} for name, y, colour in lines]
    layout = {"height": height, "margin": {"l": 30, "r": 10, "t": 10, "b": 30},
              "legend": {"orientation": "h", "y": 1.12}, "yaxis": {"range": [-0.5, 3]},
              "xaxis": {"title": {"text": "x"}}}
    return ReadyFigure({"data": data, "layout": layout})


def zoom_figure(window: np.ndarray, x0: int, y0: int, sel: tuple[int, int], *,
                height: int = 430) -> ReadyFigure:
    """Pixels around the chosen one, enlarged, each labelled with its value; click picks a pixel.

    window: (h, w) grey values; (x0, y0) is the window's top-left in image coordinates.
    """
    h, w = window.shape
    xs, ys = np.arange(x0, x0 + w), np.arange(y0, y0 + h)
    values = window.astype(int)
    heat = {"type": "heatmap", "z": values.tolist(), "x": xs.tolist(), "y": ys.tolist(),
            "colorscale": BLACK_WHITE, "zmin": 0, "zmax": 255, "showscale": False,
            "text": values.tolist(), "texttemplate": "%{text}", "textfont": {"size": 9},
            "hoverinfo": "skip"}
    # Heatmaps cannot be selected in Plotly, so an invisible marker on every pixel takes the click.
    gx, gy = np.meshgrid(xs, ys)
    faint = {"marker": {"opacity": 0.01}}
    picker = {"type": "scatter", "mode": "markers", "x": gx.ravel().tolist(), "y": gy.ravel().tolist(),
              "customdata": values.ravel().tolist(),
              "hovertemplate": "x=%{x}, y=%{y}: %{customdata}<extra></extra>",
              "marker": {"symbol": "square", "size": 18, "opacity": 0.01, "color": "#000"},
              "selected": faint, "unselected": faint, "showlegend": False}
    sx, sy = sel
    shapes = [{"type": "rect", "x0": sx - 1.5, "x1": sx + 1.5, "y0": sy - 1.5, "y1": sy + 1.5,
               "line": {"color": "#f4a55e", "width": 3}},
              {"type": "rect", "x0": sx - 0.5, "x1": sx + 0.5, "y0": sy - 0.5, "y1": sy + 0.5,
               "line": {"color": "#2166ac", "width": 3}}]
    layout = {"height": height, "width": height - 20, "shapes": shapes, "dragmode": False,
              "clickmode": "event+select", "margin": {"l": 40, "r": 4, "t": 4, "b": 40},
              "xaxis": {"title": {"text": "x"}},
              "yaxis": {"title": {"text": "y"}, "autorange": "reversed", "scaleanchor": "x"}}
    return ReadyFigure({"data": [heat, picker], "layout": layout})


def learning_animation(kernels: Sequence[np.ndarray], losses: Sequence[float], steps: Sequence[int],
                       target: np.ndarray, *, height: int = 380) -> go.Figure:
    """Weights converging to the hidden kernel, beside the loss curve; played in the browser."""
    from plotly.subplots import make_subplots

    ks = [np.asarray(k, float) for k in kernels]
    m = max(float(np.abs(target).max()), max(float(np.abs(k).max()) for k in ks), 1e-9)
    loss_arr = np.asarray(losses, float)
    finite = loss_arr[np.isfinite(loss_arr) & (loss_arr > 0)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (1e-6, 1.0)

    def weights_trace(k: np.ndarray) -> go.Heatmap:
        return go.Heatmap(z=k, text=[[f"{v:.3f}" for v in row] for row in k], texttemplate="%{text}",
                          colorscale=BLUE_ORANGE, zmin=-m, zmax=m, showscale=False, xgap=2, ygap=2,
                          hoverinfo="skip")

    fig = make_subplots(rows=1, cols=3, column_widths=[0.26, 0.26, 0.48],
                        subplot_titles=("learned weights", "hidden kernel", "loss (log scale)"))
    fig.add_trace(weights_trace(ks[0]), 1, 1)
    fig.add_trace(weights_trace(np.asarray(target, float)), 1, 2)
    fig.add_trace(go.Scatter(x=list(steps), y=list(loss_arr), mode="lines", line=dict(color="#bbb"),
                             name="whole run", hoverinfo="skip"), 1, 3)
    fig.add_trace(go.Scatter(x=[steps[0]], y=[loss_arr[0]], mode="markers",
                             marker=dict(size=11, color="#b35806"), name="now"), 1, 3)
    frames = [go.Frame(name=str(s), data=[weights_trace(k), go.Scatter(x=[s], y=[l])],
                       traces=[0, 3]) for s, k, l in zip(steps, ks, loss_arr)]
    fig.frames = frames
    for col in (1, 2):
        fig.update_yaxes(autorange="reversed", visible=False, row=1, col=col)
        fig.update_xaxes(visible=False, row=1, col=col)
    fig.update_yaxes(type="log", range=[np.log10(lo) - 0.3, np.log10(hi) + 0.3], row=1, col=3)
    fig.update_xaxes(title="step", row=1, col=3)
    slider = dict(active=0, currentvalue=dict(prefix="step "), pad=dict(t=40),
                  steps=[dict(method="animate", label=str(s),
                              args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                   transition=dict(duration=0))]) for s in steps])
    fig.update_layout(
        height=height, showlegend=False, margin=dict(l=10, r=10, t=40, b=10), sliders=[slider],
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.12, xanchor="left",
                          buttons=[dict(label="▶ Play", method="animate",
                                        args=[None, dict(frame=dict(duration=60, redraw=True),
                                                         fromcurrent=True, transition=dict(duration=0))]),
                                   dict(label="⏸ Pause", method="animate",
                                        args=[[None], dict(mode="immediate", frame=dict(duration=0))])])])
    return fig
