"""SGD: fit a line by gradient descent and watch what the learning rate does.

Thin page: widgets return plain values, engine.sgd computes (the fit and the animation frames),
Plotly draws. The animation plays in the browser; nothing here runs per frame.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from engine import sgd
from ui import state as S
from ui.figures import ReadyFigure
from ui import urlstate
from ui.nav import ensure_app_navigation

PAGE = "sgd"
#: the learning-rate slider's values: 1e-4 … 10, about 4.7 % apart (evenly spaced on a log scale)
LR_GRID = tuple(float(f"{10 ** (e / 50):.3g}") for e in range(-200, 51))
BATCH_CHOICES = (1, 2, 5, 10, 20, 50, 100, 200, 500)
SPEEDS = {300: "slow", 150: "calm", 80: "normal", 30: "fast"}
PRESETS = {
    "lesson": "the lesson's set-up: lr 0.1, 100 full-batch steps from (−1, 1)",
    "too low": "lr 0.001: every step is tiny, after 100 steps the line has hardly moved",
    "too high": "just above the critical learning rate: each step overshoots a little more",
    "way too high": "about three times the critical rate: the loss explodes in a few steps",
}
COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728")


# ------------------------------------------------------------------------------------------------
# State

def init_state() -> None:
    """Defaults first, then a shared link's values on the session's first visit of this page."""
    for p in urlstate.table(PAGE):
        S.restore(p.key, p.default)
    if not st.session_state.get(S.S_URL_LOADED):
        st.session_state[S.S_URL_LOADED] = True
        for problem in urlstate.load(PAGE):
            st.warning(problem)
    # a value typed into a link may fall between the sliders' stops: move it to the nearest one
    S.set_value(S.S_LR, _nearest(LR_GRID, float(S.get(S.S_LR)), log=True))
    S.set_value(S.S_SPEED, _nearest(tuple(SPEEDS), int(S.get(S.S_SPEED))))
    S.set_value(S.S_BATCH, _nearest(batch_options(int(S.get(S.S_N))), int(S.get(S.S_BATCH))))


def widget_keys() -> list[str]:
    return [p.key for p in urlstate.table(PAGE)]


def _nearest(options, value, log: bool = False):
    if value in options:
        return value
    f = (lambda v: math.log(max(v, 1e-12))) if log else float
    return min(options, key=lambda o: abs(f(o) - f(value)))


def batch_options(n: int) -> tuple[int, ...]:
    """Mini-batch sizes smaller than the data, then 0 = the full batch."""
    return tuple(b for b in BATCH_CHOICES if b < n) + (0,)


def lr_above(target: float) -> float:
    """The slider's first learning rate at or above `target`."""
    return next((v for v in LR_GRID if v >= target), LR_GRID[-1])


def _apply_preset(name: str) -> None:
    """Button callback: runs before the script, so the widgets are drawn with the new values."""
    if name == "lesson":
        for p in urlstate.table(PAGE):
            if p.key not in (S.S_LOGY, S.S_SURFACE3D, S.S_LINE_BY_LINE, S.S_SPEED, S.S_COMPARE):
                S.set_value(p.key, p.default)
        return
    if name == "too low":
        lr = 0.001
    else:
        try:
            x, _ = line_data(int(S.get(S.S_N)), float(S.get(S.S_NOISE)), int(S.get(S.S_SEED)))
            crit = sgd.critical_lr(x)
        except sgd.SGDError:
            crit = 1.0
        lr = lr_above(1.05 * crit if name == "too high" else 3.0 * crit)
    S.set_value(S.S_LR, lr)
    S.set_value(S.S_OPTIMIZER, "sgd")
    S.set_value(S.S_BATCH, 0)
    S.set_value(S.S_STEPS, 100)


# ------------------------------------------------------------------------------------------------
# Data and runs (cached: the same controls give the same numbers without recomputing)

@st.cache_data(show_spinner=False, max_entries=64)
def line_data(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = sgd.make_line_data(n, noise=noise, seed=seed)
    return x.numpy(), y.numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def run_fit(n: int, noise: float, seed: int, a0: tuple[float, float], lr: float, steps: int,
            batch_size: int | None, optimizer: str) -> sgd.FitResult:
    x, y = line_data(n, noise, seed)
    return sgd.fit(x, y, a0=a0, lr=lr, steps=steps, batch_size=batch_size, optimizer=optimizer,
                   seed=seed)


# ------------------------------------------------------------------------------------------------
# Controls: each returns plain values

def preset_buttons() -> None:
    st.write("**Presets**")
    cols = st.columns(2)
    for i, (name, help_text) in enumerate(PRESETS.items()):
        cols[i % 2].button(name, key=f"sgd.preset.{name.replace(' ', '_')}", help=help_text,
                           on_click=_apply_preset, args=(name,), width="stretch")


def training_controls() -> dict:
    lr = st.select_slider("Learning rate (log scale)", options=LR_GRID, key=S.S_LR,
                          format_func=lambda v: f"{v:g}",
                          help="What the gradient is multiplied by before it is subtracted from "
                               "the parameters. The slider's stops are evenly spaced on a log scale.")
    optimizer = st.radio("Optimizer", sgd.OPTIMIZERS, key=S.S_OPTIMIZER, horizontal=True,
                         format_func=lambda o: {"sgd": "plain", "momentum": "momentum",
                                                "adam": "Adam"}[o],
                         help=" · ".join(sgd.OPTIMIZER_LABELS.values()))
    n = int(S.get(S.S_N))
    batch = st.select_slider("Batch size", options=batch_options(n), key=S.S_BATCH,
                             format_func=lambda b: f"all {n} (full batch)" if b == 0 else str(b),
                             help="Full batch: every step uses every point (gradient descent). "
                                  "A smaller number: every step uses a random handful (stochastic "
                                  "gradient descent); one pass over all points is an epoch.")
    steps = st.slider("Steps", 1, 1000, key=S.S_STEPS)
    return {"lr": float(lr), "optimizer": optimizer, "batch_size": int(batch) or None,
            "steps": int(steps)}


def data_controls() -> dict:
    with st.expander("Points and start", expanded=False):
        n = st.number_input("Number of points", 10, 1000, step=10, key=S.S_N)
        noise = st.slider("Noise (added uniform 0…noise)", 0.0, 5.0, step=0.1, key=S.S_NOISE)
        seed = st.number_input("Seed", 0, 2**31 - 1, step=1, key=S.S_SEED,
                               help="Same seed, same points and the same mini-batches.")
        c1, c2 = st.columns(2)
        a1 = c1.number_input("start a1 (slope)", -10.0, 10.0, step=0.5, key=S.S_A1)
        a2 = c2.number_input("start a2 (intercept)", -10.0, 10.0, step=0.5, key=S.S_A2)
    return {"n": int(n), "noise": float(noise), "seed": int(seed), "a0": (float(a1), float(a2))}


def display_controls() -> dict:
    with st.expander("Display", expanded=False):
        log_y = st.toggle("Loss on a log scale", key=S.S_LOGY)
        line_by_line = st.toggle("Line by line (four frames per step)", key=S.S_LINE_BY_LINE,
                                 help="Slow motion through the code: predict, loss, backward, "
                                      "update. Fits the first 49 steps into the 200 frames.")
        surface3d = st.toggle("Loss surface in 3D", key=S.S_SURFACE3D)
        speed = st.select_slider("Animation speed", options=tuple(SPEEDS), key=S.S_SPEED,
                                 format_func=SPEEDS.get)
    return {"log_y": log_y, "line_by_line": line_by_line, "surface3d": surface3d,
            "frame_ms": int(speed)}


def parse_compare(text: str) -> list[float]:
    """'0.01, 0.1, 1' -> [0.01, 0.1, 1.0]; raises SGDError with a sentence for the user."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise sgd.SGDError(f"“{p}” is not a number: type two to four learning rates separated "
                               "by commas, such as 0.01, 0.1, 0.9.") from None
        if not (math.isfinite(v) and 1e-4 <= v <= 10):
            raise sgd.SGDError(f"{p} is outside 0.0001 … 10: pick learning rates in that range.")
        values.append(v)
    if not 2 <= len(values) <= 4:
        raise sgd.SGDError(f"Type two to four learning rates separated by commas (got "
                           f"{len(values)}), such as 0.01, 0.1, 0.9.")
    return values


# ------------------------------------------------------------------------------------------------
# Drawing

def critical_lr_note(x: np.ndarray, run: dict) -> None:
    crit = sgd.critical_lr(x)
    lam = float(np.linalg.eigvalsh(sgd.hessian(x))[-1])
    st.markdown(f"**Critical learning rate for these points: {crit:.3g}** "
                f"(2 ÷ {lam:.3g}, the steepest curvature of the loss bowl).")
    lr, opt = run["lr"], run["optimizer"]
    if opt == "sgd" and lr > crit:
        st.warning(f"lr = {lr:g} is above the critical {crit:.3g}, so this run will diverge. Along "
                   f"the steepest direction every step jumps past the bottom of the valley and lands "
                   f"higher on the other side than it started (by a factor |1 − lr·{lam:.3g}| = "
                   f"{abs(1 - lr * lam):.2f}), so the loss grows with every step.")
    elif opt == "momentum":
        crit_m = sgd.critical_lr(x, momentum=0.9)
        msg = (f"With momentum 0.9 the old steps keep pushing, and the limit for full-batch runs "
               f"moves to 2·(1 + 0.9) ÷ {lam:.3g} = {crit_m:.3g}.")
        (st.warning if lr > crit_m else st.caption)(
            msg + (" This learning rate is above it, so the run will diverge." if lr > crit_m else ""))
    elif opt == "adam":
        st.caption("Adam divides each step by a running size of the gradient, so a step is about lr "
                   "long whatever the slope: it does not blow up like plain steps, but a large lr "
                   "makes it bounce around the bottom.")
    if run["batch_size"] and opt != "adam":
        st.caption("The critical value is worked out for full batches. A mini-batch has its own, "
                   "noisier bowl, so a run close below the limit can still blow up.")


def animation(x: np.ndarray, y: np.ndarray, res: sgd.FitResult, view: dict) -> None:
    title = (f"lr {res.lr:g} · {res.optimizer} · "
             f"{'full batch' if res.batch_size is None else f'batch {res.batch_size}'} · "
             f"{res.steps} steps")
    fig = sgd.animation_figure(x, y, res, max_frames=200, log_y=view["log_y"],
                               line_by_line=view["line_by_line"], frame_ms=view["frame_ms"],
                               title=title)
    st.plotly_chart(ReadyFigure(fig), key="sgd.animation", width="stretch",
                    config={"displaylogo": False})
    shown = len(fig["frames"])
    if view["line_by_line"] and res.last > shown // len(sgd.PHASES):
        st.caption(f"Line by line: the animation covers the first {shown // len(sgd.PHASES)} steps, "
                   "four frames each. Turn it off in Display to see the whole run.")
    elif res.last + 1 > shown:
        st.caption(f"{res.last} steps are shown in {shown} frames (every "
                   f"~{res.last / (shown - 1):.1f}th step); the numbers in the code are exact.")


def outcome(x: np.ndarray, y: np.ndarray, res: sgd.FitResult) -> None:
    best = sgd.least_squares(x, y)
    if res.diverged:
        st.error(f"The run diverged at step {res.diverged_at}: the loss reached "
                 f"{res.losses[res.diverged_at]:.3g}, a million times where it started, so training "
                 "stopped there. The charts show it clipped at their edges. Lower the learning rate "
                 "below the critical one and press Play again.")
        return
    a = res.final
    c1, c2, c3 = st.columns(3)
    c1.metric("loss at the end", f"{res.final_loss:.4g}", f"{res.final_loss - res.losses[0]:.3g}",
              delta_color="inverse")
    c2.metric("a found (slope, intercept)", f"{a[0]:.2f}, {a[1]:.2f}")
    c3.metric("distance to the best line", f"{np.linalg.norm(a - best):.2g}")
    per_step = f"all {res.n} points" if res.batch_size is None else f"{res.batch_size} of {res.n} points"
    st.caption(f"Each step used {per_step}, so {res.steps} steps = {res.epochs:g} "
               f"epoch{'s' if res.epochs != 1 else ''}. The best line is y = {best[0]:.3f}x + "
               f"{best[1]:.3f}.")


def surface3d(x: np.ndarray, y: np.ndarray, res: sgd.FitResult) -> go.Figure:
    (a1lo, a1hi), (a2lo, a2hi) = sgd.view_window(x, y, res)
    a1g, a2g = np.linspace(a1lo, a1hi, 50), np.linspace(a2lo, a2hi, 50)
    z = sgd.loss_surface(x, y, a1g, a2g)
    path = np.clip(res.params[: res.last + 1], [a1lo, a2lo], [a1hi, a2hi])
    zp = sgd.loss_surface(x, y, path[:, 0], path[:, 1]).diagonal() if len(path) < 2000 else None
    fig = go.Figure(go.Surface(x=a1g, y=a2g, z=z, colorscale=sgd.SURFACE_COLORS,
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


def why_learning_rate() -> None:
    st.subheader("Why a learning rate at all?")
    st.write("The gradient says which way is downhill and how steep it is, but not how far to go. "
             "Take the simplest bowl, f(w) = w², whose slope at w is 2w. Each jump is "
             "w ← w − lr · 2w, so the distance to the bottom is multiplied by |1 − 2·lr| every step. "
             "Below lr = 0.5 the ball creeps down one side; between 0.5 and 1 it jumps across the "
             "bottom but lands a bit lower each time; above 1 every jump lands higher than the last "
             "and it flies off. The line fit has the same three regimes, with 2 ÷ (steepest "
             "curvature) in place of 1.")
    st.plotly_chart(ReadyFigure(quadratic_figure_json()), key="sgd.quadratic", width="stretch",
                    config={"displaylogo": False})


@st.cache_data(show_spinner=False, max_entries=1)
def quadratic_figure_json() -> dict:
    """quadratic_figure as plain JSON, built once per process: it never changes, and building it
    through go objects cost ~40 % of an SGD page run (py-spy under the load test)."""
    return quadratic_figure().to_plotly_json()


def compare_section(x: np.ndarray, y: np.ndarray, data: dict, run: dict) -> None:
    st.subheader("Compare learning rates")
    text = st.text_input("Learning rates to compare (two to four, comma-separated)", key=S.S_COMPARE,
                         help="Same points, start, optimizer, batch size and steps as above.")
    try:
        lrs = parse_compare(text)
        results = [run_fit(**data, lr=lr, steps=run["steps"], batch_size=run["batch_size"],
                           optimizer=run["optimizer"]) for lr in lrs]
    except sgd.SGDError as exc:
        st.error(str(exc))
        return
    # frame the runs that stay finite; a diverging path simply leaves the picture
    kept = [r for r in results if not r.diverged] or results[:1]
    (a1lo, a1hi), (a2lo, a2hi) = sgd.view_window(x, y, kept[0], extra=[r.params for r in kept[1:]])
    a1g, a2g = np.linspace(a1lo, a1hi, 60), np.linspace(a2lo, a2hi, 60)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=["loss (log scale)", "paths on the loss surface"])
    fig.add_trace(go.Contour(x=a1g, y=a2g, z=np.log10(sgd.loss_surface(x, y, a1g, a2g) + 1e-12),
                             colorscale=sgd.SURFACE_COLORS, showscale=False, ncontours=22,
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
    st.plotly_chart(fig, key="sgd.compare_chart", width="stretch",
                    config={"displaylogo": False})


VOCABULARY = {
    "parameters": "the numbers the training adjusts. Here there are two, a1 (slope) and a2 "
                  "(intercept); a ResNet has millions, and they are trained exactly the same way.",
    "architecture": "the shape of the function the parameters plug into. Here: a straight line, "
                    "y = a1·x + a2, written as x @ a. Changing the architecture changes what can be "
                    "fitted at all; changing parameters picks one function of that shape.",
    "loss function": "one number that says how wrong the current parameters are on the data. For "
                     "numbers we use the mean squared error: the average of (prediction − target)².",
    "gradient": "for each parameter, how fast the loss rises if that parameter is nudged up. "
                "`loss.backward()` works it out for every parameter at once.",
    "learning rate": "how much of the gradient is taken off the parameters each step. Too small: "
                     "the loss creeps down. Too large: the steps overshoot the bottom and the loss "
                     "grows instead.",
    "mini-batch": "a random handful of points used for one step instead of all of them. Its "
                  "gradient is a noisy guess of the full one, but far cheaper on big data.",
    "SGD": "stochastic gradient descent: gradient descent where every step uses a mini-batch; "
           "the randomness is what makes its path zig-zag.",
    "epoch": "one pass in which every point has been used once. With 100 points and batches of "
             "10, an epoch is 10 steps.",
}


def vocabulary() -> None:
    with st.container(border=True):
        st.markdown("**Words on this page**")
        st.markdown("\n".join(f"- **{word}** — {text}" for word, text in VOCABULARY.items()))


LOOP_CODE = """import torch

n = 100
x = torch.ones(n, 2)
x[:, 0].uniform_(-1, 1)          # first column: x in [-1, 1]; second: ones (the intercept)
y = x @ torch.tensor([3., 2.]) + torch.rand(n)

a = torch.tensor([-1., 1.], requires_grad=True)   # the two parameters
lr = {lr}
for step in range({steps}):
    preds = x @ a                                 # predict: a1·x + a2 for every point
    loss = ((preds - y) ** 2).mean()              # mean squared error
    loss.backward()                               # a.grad = how the loss changes with a
    with torch.no_grad():                         # the update is not part of the model
        a -= lr * a.grad
        a.grad.zero_()                            # gradients add up unless cleared
print(a)"""


def share(query: str) -> None:
    base = (st.context.url or "").split("?")[0]
    st.write("**Share link** — every control above, seed included; opening it replays the same run:")
    st.code(f"{base}?{query}", language=None, wrap_lines=True)


# ------------------------------------------------------------------------------------------------

def main() -> None:
    st.title("SGD: fitting a line by gradient descent")
    st.caption("Two parameters, a1 and a2, describe a line y = a1·x + a2. Training starts from a "
               "wrong line and repeats one step: predict, measure the loss, ask for the gradient, "
               "move the parameters a little against it. The learning rate decides how little. "
               "Press ▶ Play under the chart; move the learning rate and play again.")
    init_state()
    left, right = st.columns([1.25, 3], gap="large")
    with left:
        preset_buttons()
        run = training_controls()
        data = data_controls()
        view = display_controls()
    S.remember(widget_keys())
    query = urlstate.sync(PAGE)
    with left:
        share(query)

    try:
        x, y = line_data(data["n"], data["noise"], data["seed"])
        res = run_fit(**data, **run)
    except sgd.SGDError as exc:
        with right:
            st.error(str(exc))
        return
    with right:
        critical_lr_note(x, run)
        animation(x, y, res, view)
        outcome(x, y, res)
        if view["surface3d"]:
            st.plotly_chart(surface3d(x, y, res), key="sgd.surface3d_chart",
                            width="stretch")
        with st.expander("The same loop as a script you can run"):
            st.code(LOOP_CODE.format(lr=run["lr"], steps=run["steps"]), language="python")
            st.caption("The page computes the same steps with the gradient written out by hand, "
                       "2/n · xᵀ(x@a − y), which is faster; a test checks that both give the same "
                       "numbers.")
    why_learning_rate()
    compare_section(x, y, data, run)
    vocabulary()


ensure_app_navigation()
main()
