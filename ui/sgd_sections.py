"""The SGD page's sections, each drawn from a run and the page's plain values: the critical learning
rate, the animation, the outcome, the loss surface in 3D, the loop as a script, the ball on a
parabola, the comparison of learning rates, the vocabulary and the share link.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine import sgd
from ui import sgd_figs, state
from ui.figures import ReadyFigure
from ui.sgd_controls import run_fit

CHART_CONFIG = {"displaylogo": False}


def critical_lr_note(x: np.ndarray, run: dict) -> None:
    crit = sgd.critical_lr(x)
    lam = sgd.steepest_curvature(x)
    st.markdown(f"**Critical learning rate for these points: {crit:.3g}** "
                f"(2 ÷ {lam:.3g}, the steepest curvature of the loss bowl).")
    lr, opt = run["lr"], run["optimizer"]
    if opt == "sgd" and lr > crit:
        st.warning(f"lr = {lr:g} is above the critical {crit:.3g}, so this run will diverge. Along "
                   f"the steepest direction every step jumps past the bottom of the valley and lands "
                   f"higher on the other side than it started (by a factor |1 − lr·{lam:.3g}| = "
                   f"{abs(1 - lr * lam):.2f}), so the loss grows with every step.")
    elif opt == "momentum":
        beta = run["momentum"]
        crit_m = sgd.critical_lr(x, momentum=beta)
        msg = (f"With momentum {beta:g} the old steps keep pushing, and the limit for full-batch "
               f"runs moves to 2·(1 + {beta:g}) ÷ {lam:.3g} = {crit_m:.3g}.")
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
    fig = sgd_figs.animation_figure(x, y, res, max_frames=200, log_y=view["log_y"],
                                    line_by_line=view["line_by_line"], frame_ms=view["frame_ms"],
                                    title=title)
    st.plotly_chart(ReadyFigure(fig), key=state.S_ANIMATION, width="stretch", config=CHART_CONFIG)
    shown = len(fig["frames"])
    phases = len(sgd_figs.PHASES)
    if view["line_by_line"] and res.last > shown // phases:
        st.caption(f"Line by line: the animation covers the first {shown // phases} steps, "
                   "four frames each. Turn it off in Display to see the whole run.")
    elif res.last + 1 > shown:
        st.caption(f"{res.last} steps are shown in {shown} frames (every "
                   f"~{res.last / (shown - 1):.1f}th step); the numbers in the code are exact.")


def outcome(x: np.ndarray, y: np.ndarray, res: sgd.FitResult, noise: float = 1.0) -> None:
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
    st.caption(NOISE_NOTE.format(half=noise / 2, b=2 + noise / 2))


#: Why the intercept is not 2, and why the lesson's own numbers differ from the page's.
NOISE_NOTE = ("Why is the intercept near {b:.3g} and not 2? The points are y = 3x + 2 plus noise "
              "drawn evenly between 0 and the noise setting, so on average the noise adds half of "
              "it ({half:.3g}) to every y and the best line is lifted by that much. The lesson uses "
              "torch.rand — evenly between 0 and 1, mean 0.5 — so its intercept settles near 2.5. "
              "Its printed losses differ from these because its points were drawn without a seed: "
              "every run of the notebook gets other points. Here the seed fixes them.")


def surface3d(x: np.ndarray, y: np.ndarray, res: sgd.FitResult) -> None:
    st.plotly_chart(sgd_figs.surface3d_figure(x, y, res), key=state.S_SURFACE3D_FIG,
                    width="stretch")


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


def loop_script(run: dict) -> None:
    with st.expander("The same loop as a script you can run"):
        st.code(LOOP_CODE.format(lr=run["lr"], steps=run["steps"]), language="python")
        st.caption("The page computes the same steps with the gradient written out by hand, "
                   "2/n · xᵀ(x@a − y), which is faster; a test checks that both give the same "
                   "numbers.")


def why_learning_rate() -> None:
    st.subheader("Why a learning rate at all?")
    st.write("The gradient says which way is downhill and how steep it is, but not how far to go. "
             "Take the simplest bowl, f(w) = w², whose slope at w is 2w. Each jump is "
             "w ← w − lr · 2w, so the distance to the bottom is multiplied by |1 − 2·lr| every step. "
             "Below lr = 0.5 the ball creeps down one side; between 0.5 and 1 it jumps across the "
             "bottom but lands a bit lower each time; above 1 every jump lands higher than the last "
             "and it flies off. The line fit has the same three regimes, with 2 ÷ (steepest "
             "curvature) in place of 1.")
    st.plotly_chart(ReadyFigure(quadratic_figure_json()), key=state.S_QUADRATIC_FIG, width="stretch",
                    config=CHART_CONFIG)


@st.cache_data(show_spinner=False, max_entries=1)
def quadratic_figure_json() -> dict:
    """quadratic_figure as plain JSON, built once per process: it never changes, and building it
    through go objects cost ~40 % of an SGD page run (py-spy under the load test)."""
    return sgd_figs.quadratic_figure().to_plotly_json()


def compare_section(x: np.ndarray, y: np.ndarray, data: dict, run: dict) -> None:
    st.subheader("Compare learning rates")
    text = st.text_input("Learning rates to compare (two to four, comma-separated)",
                         key=state.S_COMPARE,
                         help="Same points, start, optimizer, batch size and steps as above.")
    try:
        lrs = sgd.parse_learning_rates(text)
        results = [run_fit(**data, lr=lr, steps=run["steps"], batch_size=run["batch_size"],
                           optimizer=run["optimizer"], momentum=run["momentum"]) for lr in lrs]
    except sgd.SGDError as exc:
        st.error(str(exc))
        return
    st.plotly_chart(sgd_figs.compare_figure(x, y, results), key=state.S_COMPARE_FIG,
                    width="stretch", config=CHART_CONFIG)


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
    "softmax": "turns a classifier's raw scores, one per class, into probabilities: each score "
               "is raised as e^score and divided by the total, so all are positive and add up "
               "to 1. Try it in the box below.",
    "cross-entropy": "the loss for classes: −ln of the probability the model gave the actual "
                     "class. Sure and right costs almost 0; sure and wrong costs a lot.",
}


def vocabulary() -> None:
    with st.container(border=True):
        st.markdown("**Words on this page**")
        st.markdown("\n".join(f"- **{word}** — {text}" for word, text in VOCABULARY.items()))


CLASS_NAMES = ("cat", "dog", "bear")


def softmax_box() -> None:
    """Three scores on sliders -> softmax probabilities -> cross-entropy for the actual class."""
    with st.container(border=True):
        st.markdown("**From scores to a loss: softmax and cross-entropy**")
        st.write("A classifier's last layer gives one raw score per class — any number, "
                 "negative too. Move the scores of three classes and pick the class the picture "
                 "really shows.")
        cols = st.columns(4)
        scores = [cols[i].slider(f"score for {name}", -10.0, 10.0, step=0.1,
                                 key=state.S_SCORE.format(i + 1))
                  for i, name in enumerate(CLASS_NAMES)]
        actual = cols[3].radio("actual class", [0, 1, 2], key=state.S_ACTUAL,
                               format_func=lambda i: CLASS_NAMES[i])
        probs = sgd.softmax(scores)
        loss = sgd.cross_entropy(scores, actual)
        left, right = st.columns([1.3, 1])
        left.plotly_chart(ReadyFigure(sgd_figs.softmax_figure(CLASS_NAMES, scores, probs, actual)),
                          key=state.S_SOFTMAX_FIG, config=CHART_CONFIG)
        with right:
            st.latex(r"p_i = \frac{e^{z_i}}{\sum_j e^{z_j}} \qquad "
                     r"\text{loss} = -\ln p_{\text{actual}}")
            exps = [float(np.exp(z)) for z in scores]
            st.markdown("e^score: " + ", ".join(f"{e:.3g}" for e in exps)
                        + f" — total {sum(exps):.4g}  \n"
                        + "probabilities: " + ", ".join(f"**{n}** {p:.3f}"
                                                        for n, p in zip(CLASS_NAMES, probs))
                        + f"  \ncross-entropy = −ln {probs[actual]:.4g} = **{loss:.4f}**")
        st.caption("Softmax makes every score positive (e to the power of the score) and divides "
                   "by the total, so the three add up to 1 and the largest score gets the largest "
                   "share; raising one score takes probability from the others. Cross-entropy then "
                   "looks only at the probability of the actual class: −ln 1 = 0 for a sure right "
                   "answer, −ln 0.5 ≈ 0.69 for a coin toss, −ln 0.01 ≈ 4.6 for a sure wrong one. So "
                   "a confident mistake costs far more than an unsure one. PyTorch's "
                   "F.cross_entropy(scores, actual) does both steps at once, from the raw scores.")


def share(query: str) -> None:
    base = (st.context.url or "").split("?")[0]
    st.write("**Share link** — every control above, seed included; opening it replays the same run:")
    st.code(f"{base}?{query}", language=None, wrap_lines=True)
