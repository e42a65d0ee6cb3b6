"""The SGD page's figures, drawn from engine.sgd's arrays and FitResult: the four-panel animation of
a run (points and line, loss, loss surface with the path, the training loop as code), the ball on a
parabola, the loss surface in 3D and the comparison of learning rates. Numbers in, a figure out; no
Streamlit.

The animation is written as plain Plotly JSON (arrays as base64 typed arrays): building it through
Plotly's objects, with their per-object validation, would take longer than computing the run.
"""
from __future__ import annotations

import base64
import math
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine import sgd
from ui.figures import typed_arrays

#: one colour per run in the comparison, and per ball on the parabola
COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728")

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
    """A number for the code comments: 4 significant digits, or powers of ten once it is huge."""
    if not math.isfinite(v):
        return "inf" if v > 0 else ("nan" if math.isnan(v) else "-inf")
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.2e}"


#: an empty comment: not "", because a text point that starts empty is never drawn when later
#: frames fill it in (Plotly only updates existing text elements while frames play without redraw)
BLANK = "\u00a0"


def _code_values(result: sgd.FitResult, k: int, phase: int | None) -> list[str]:
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


def animation_figure(x, y, result: sgd.FitResult, *, max_frames: int = 200, log_y: bool = True,
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
    xs, ys = sgd.as_numpy(x, y)
    f32 = np.float32
    last = result.last
    (a1lo, a1hi), (a2lo, a2hi) = sgd.view_window(xs, ys, result)
    a1g, a2g = np.linspace(a1lo, a1hi, 120), np.linspace(a2lo, a2hi, 120)
    zlog = np.log10(sgd.loss_surface(xs, ys, a1g, a2g) + 1e-12)         # (120, 120), rows follow a2
    cx, cy = contour_lines(zlog, a1g, a2g)
    best = sgd.least_squares(xs, ys)
    clip_hi = sgd.DIVERGE_FACTOR * max(float(result.losses[0]), 1.0)
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
        plan = [(int(k), None) for k in sgd.frame_steps(result.steps, last, max_frames)]

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
    return typed_arrays({"data": data, "layout": layout, "frames": frames})


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


def surface3d_figure(x, y, result: sgd.FitResult) -> go.Figure:
    """The loss surface as a 3-D bowl with the run's path drawn on it (clipped to the window)."""
    (a1lo, a1hi), (a2lo, a2hi) = sgd.view_window(x, y, result)
    a1g, a2g = np.linspace(a1lo, a1hi, 50), np.linspace(a2lo, a2hi, 50)
    z = sgd.loss_surface(x, y, a1g, a2g)
    path = np.clip(result.params[: result.last + 1], [a1lo, a2lo], [a1hi, a2hi])
    zp = sgd.loss_surface(x, y, path[:, 0], path[:, 1]).diagonal() if len(path) < 2000 else None
    fig = go.Figure(go.Surface(x=a1g, y=a2g, z=z, colorscale=SURFACE_COLORS,
                               showscale=False, opacity=0.9, name="loss"))
    if zp is not None:
        fig.add_trace(go.Scatter3d(x=path[:, 0], y=path[:, 1], z=zp * 1.01 + 1e-3,
                                   mode="lines+markers", marker={"size": 2, "color": "#d62728"},
                                   line={"color": "#d62728", "width": 4}, name="path"))
    fig.update_layout(height=520, margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      scene={"xaxis_title": "a1 (slope)", "yaxis_title": "a2 (intercept)",
                             "zaxis_title": "loss"})
    return fig


def quadratic_figure() -> go.Figure:
    """Three balls on f(w) = w², each jumping by lr × slope; frames play the jumps."""
    steps = 8
    runs = [(title, lr, *sgd.quadratic_descent(lr, w0=-2.0, steps=steps))
            for title, lr in sgd.QUADRATIC_CASES]
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.06,
                        subplot_titles=[f"lr = {lr} — {title}" for title, lr, _, _ in runs])
    for col, (_, lr, w, f) in enumerate(runs, start=1):
        span = max(2.3, float(np.abs(w).max()) * 1.1)
        grid = np.linspace(-span, span, 121)
        fig.add_trace(go.Scatter(x=grid, y=grid**2, mode="lines", line={"color": "#9aa5b1"},
                                 hoverinfo="skip", showlegend=False), row=1, col=col)
        fig.update_xaxes(range=[-span, span], title_text="w", row=1, col=col)
        fig.update_yaxes(range=[-0.05 * span**2, span**2 * 1.05], row=1, col=col)
    for col, (_, lr, w, f) in enumerate(runs, start=1):   # drawn whole; ▶ replays the jumps
        fig.add_trace(go.Scatter(x=w, y=f, mode="lines+markers", showlegend=False,
                                 line={"color": COLORS[col], "width": 1.5, "dash": "dot"},
                                 marker={"size": [7] * (len(w) - 1) + [14], "color": COLORS[col]},
                                 hovertemplate="w=%{x:.3f}<br>f(w)=%{y:.3f}<extra></extra>"),
                      row=1, col=col)
    frames = []
    for k in range(steps + 1):
        data = []
        for _, _, w, f in runs:
            m = min(k, len(w) - 1) + 1
            data.append(go.Scatter(x=w[:m], y=f[:m], marker={"size": [7] * (m - 1) + [14]}))
        frames.append(go.Frame(name=str(k), data=data, traces=[3, 4, 5]))
    fig.frames = frames
    play = {"frame": {"duration": 600, "redraw": False}, "fromcurrent": True,
            "transition": {"duration": 300}, "mode": "immediate"}
    fig.update_layout(
        height=330, margin={"l": 30, "r": 10, "t": 40, "b": 70},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0, "y": -0.25, "xanchor": "left",
                      "showactive": False,
                      "buttons": [{"label": "▶ Play the jumps", "method": "animate",
                                   "args": [None, play]},
                                  {"label": "↺ Start", "method": "animate",
                                   "args": [["0"], {"mode": "immediate",
                                                    "frame": {"duration": 0, "redraw": False}}]}]}],
    )
    return fig


def compare_figure(x, y, results: list[sgd.FitResult]) -> go.Figure:
    """Runs with different learning rates: their losses side by side, and their paths on the loss
    surface (up to len(COLORS) runs)."""
    # frame the runs that stay finite; a diverging path simply leaves the picture
    kept = [r for r in results if not r.diverged] or results[:1]
    (a1lo, a1hi), (a2lo, a2hi) = sgd.view_window(x, y, kept[0], extra=[r.params for r in kept[1:]])
    a1g, a2g = np.linspace(a1lo, a1hi, 60), np.linspace(a2lo, a2hi, 60)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=["loss (log scale)", "paths on the loss surface"])
    fig.add_trace(go.Contour(x=a1g, y=a2g, z=np.log10(sgd.loss_surface(x, y, a1g, a2g) + 1e-12),
                             colorscale=SURFACE_COLORS, showscale=False, ncontours=22,
                             line={"width": 0.5}, hoverinfo="skip"), row=1, col=2)
    for r, color in zip(results, COLORS):
        clip_hi = sgd.DIVERGE_FACTOR * max(float(r.losses[0]), 1.0)
        losses = np.clip(r.losses[: r.last + 1], 1e-12, clip_hi)
        name = f"lr {r.lr:g}" + (f" (diverged at step {r.diverged_at})" if r.diverged else "")
        fig.add_trace(go.Scatter(y=losses, mode="lines", name=name, legendgroup=name,
                                 line={"color": color}), row=1, col=1)
        path = r.params[: r.last + 1]
        fig.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name=name,
                                 legendgroup=name, showlegend=False, marker={"size": 3},
                                 line={"color": color, "width": 1.5}), row=1, col=2)
    best = sgd.least_squares(x, y)
    fig.add_trace(go.Scatter(x=[best[0]], y=[best[1]], mode="markers", name="best line",
                             marker={"symbol": "star", "size": 14, "color": "#f5b700",
                                     "line": {"color": "black", "width": 1}}), row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="a1 (slope)", range=[a1lo, a1hi], row=1, col=2)
    fig.update_yaxes(title_text="a2 (intercept)", range=[a2lo, a2hi], row=1, col=2)
    fig.update_layout(height=420, margin={"l": 40, "r": 10, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.15})
    return fig


def softmax_figure(names: Sequence[str], scores: Sequence[float], probs: np.ndarray,
                   actual: int, height: int = 260) -> dict:
    """Raw scores beside the probabilities softmax makes of them; the actual class highlighted."""
    colours = ["#b35806" if i == actual else "#67a9cf" for i in range(len(names))]
    score_bars = {"type": "bar", "x": list(names), "y": [float(z) for z in scores],
                  "marker": {"color": colours}, "texttemplate": "%{y:.1f}", "textposition": "outside",
                  "xaxis": "x", "yaxis": "y", "hovertemplate": "%{x}: score %{y:.2f}<extra></extra>"}
    prob_bars = {"type": "bar", "x": list(names), "y": [float(p) for p in probs],
                 "marker": {"color": colours}, "texttemplate": "%{y:.3f}", "textposition": "outside",
                 "xaxis": "x2", "yaxis": "y2",
                 "hovertemplate": "%{x}: probability %{y:.4f}<extra></extra>"}
    top = max(1.0, max(abs(float(z)) for z in scores) * 1.25)
    layout = {"height": height, "showlegend": False, "margin": {"l": 30, "r": 10, "t": 30, "b": 30},
              "xaxis": {"domain": [0, 0.42]}, "xaxis2": {"domain": [0.6, 1], "anchor": "y2"},
              "yaxis": {"range": [-top, top], "title": {"text": "score"}},
              "yaxis2": {"range": [0, 1.15], "anchor": "x2", "title": {"text": "probability"}},
              "annotations": [{"text": "raw scores", "x": 0.22, "y": 1.1, "xref": "paper",
                               "yref": "paper", "showarrow": False},
                              {"text": "→ softmax → probabilities", "x": 0.78, "y": 1.1,
                               "xref": "paper", "yref": "paper", "showarrow": False}]}
    return {"data": [score_bars, prob_bars], "layout": layout}
