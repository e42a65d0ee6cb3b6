"""engine.sgd: the line fit against independent answers (numpy lstsq, a hand-written MSE, PyTorch
autograd and torch.optim), the critical learning rate, divergence, and the animation figure."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine import sgd
from ui import figures, sgd_figs


@pytest.fixture(scope="module")
def data():
    return sgd.make_line_data()


def test_make_line_data_is_the_lessons_setup():
    x, y = sgd.make_line_data(n=500, noise=1.0, seed=7)
    assert x.shape == (500, 2) and y.shape == (500,)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert torch.all(x[:, 1] == 1)
    assert x[:, 0].min() >= -1 and x[:, 0].max() <= 1 and x[:, 0].std() > 0.4
    noise = y - x @ torch.tensor([3.0, 2.0])
    assert noise.min() >= -1e-5 and noise.max() < 1 + 1e-5     # uniform [0, 1)
    x2, y2 = sgd.make_line_data(n=500, noise=1.0, seed=7)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = sgd.make_line_data(n=500, noise=1.0, seed=8)
    assert not torch.equal(x, x3)
    _, y0 = sgd.make_line_data(n=50, noise=0.0, seed=1)
    x0, _ = sgd.make_line_data(n=50, noise=0.0, seed=1)
    assert torch.allclose(y0, x0 @ torch.tensor([3.0, 2.0]))


def test_initial_loss_is_the_mse_of_the_start_line(data):
    x, y = data
    res = sgd.fit(x, y, steps=3)
    xn, yn = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
    expected = np.mean((xn[:, 0] * -1.0 + 1.0 - yn) ** 2)     # y_hat = -1·x + 1, written out
    assert res.losses[0] == pytest.approx(expected, rel=1e-12)
    assert np.array_equal(res.params[0], [-1.0, 1.0])
    assert res.params.shape == (4, 2) and res.losses.shape == (4,)


def test_full_batch_reaches_least_squares(data):
    x, y = data
    res = sgd.fit(x, y, lr=0.1, steps=1000)
    best = np.linalg.lstsq(x.numpy().astype(np.float64), y.numpy().astype(np.float64), rcond=None)[0]
    assert res.diverged_at is None
    assert np.max(np.abs(res.params[-1] - best)) < 1e-3
    assert np.all(np.diff(res.losses) <= 1e-12)                 # below critical LR: loss never rises


def test_losses_are_the_full_data_mse_at_each_row(data):
    x, y = data
    res = sgd.fit(x, y, lr=0.3, steps=20, batch_size=10)
    for k in (0, 5, 20):
        assert res.losses[k] == pytest.approx(sgd.mse(x, y, res.params[k]), rel=1e-12)


def test_critical_lr_separates_converging_from_diverging(data):
    x, y = data
    lam = np.linalg.eigvalsh(2 / len(x) * x.numpy().astype(np.float64).T @ x.numpy().astype(np.float64))
    crit = sgd.critical_lr(x)
    assert crit == pytest.approx(2 / lam.max())
    best = sgd.least_squares(x, y)
    good = sgd.fit(x, y, lr=0.95 * crit, steps=1000)
    assert good.diverged_at is None and np.max(np.abs(good.params[-1] - best)) < 1e-3
    bad = sgd.fit(x, y, lr=1.05 * crit, steps=1000)
    assert bad.diverged_at is not None and 0 < bad.diverged_at <= 1000
    # the run ended cleanly: rows up to the divergence are filled, the rest are NaN
    assert np.all(np.isfinite(bad.params[: bad.diverged_at + 1]))
    assert np.all(np.isnan(bad.losses[bad.diverged_at + 1:]))
    assert bad.losses[bad.diverged_at] > 1e5 * bad.losses[0]


def test_way_too_high_diverges_fast_without_warnings(data):
    x, y = data
    with np.errstate(all="raise"):
        res = sgd.fit(x, y, lr=10.0, steps=1000)
    assert res.diverged_at is not None and res.diverged_at < 20


def test_minibatch_paths_zigzag_but_end_near_the_optimum(data):
    x, y = data
    best = sgd.least_squares(x, y)
    full = sgd.fit(x, y, lr=0.1, steps=2000)
    mini = sgd.fit(x, y, lr=0.1, steps=2000, batch_size=10, seed=3)
    other = sgd.fit(x, y, lr=0.1, steps=2000, batch_size=10, seed=4)
    assert not np.allclose(mini.params[1:50], full.params[1:50])
    assert not np.allclose(mini.params[1:50], other.params[1:50])
    # full batch steps go straight down the valley; mini-batch steps change direction more often
    turns = lambda p: np.sum(np.diff(np.sign(np.diff(p[:, 1]))) != 0)  # noqa: E731
    assert turns(mini.params[:300]) > turns(full.params[:300]) + 20
    assert np.linalg.norm(mini.params[-1] - best) < 0.15
    assert np.linalg.norm(mini.params[-200:].mean(axis=0) - best) < 0.1
    # every point is seen once per epoch
    first_epoch = np.concatenate(mini.batches[:10])
    assert sorted(first_epoch.tolist()) == list(range(100))
    assert mini.epochs == pytest.approx(200)


@pytest.mark.parametrize("optimizer,lr", [("momentum", 0.1), ("adam", 0.05)])
def test_momentum_and_adam_reach_the_optimum(data, optimizer, lr):
    x, y = data
    res = sgd.fit(x, y, lr=lr, steps=1000, optimizer=optimizer)
    assert res.diverged_at is None
    assert np.max(np.abs(res.params[-1] - sgd.least_squares(x, y))) < 1e-3


def test_unknown_optimizer_lists_the_valid_ones(data):
    x, y = data
    with pytest.raises(ValueError, match="sgd, momentum, adam"):
        sgd.fit(x, y, optimizer="rmsprop")


@pytest.mark.parametrize("kwargs", [{"lr": 0}, {"lr": float("nan")}, {"steps": -1},
                                    {"batch_size": 0}, {"batch_size": 101}, {"a0": (1.0, float("inf"))}])
def test_bad_settings_raise_a_sentence(data, kwargs):
    x, y = data
    with pytest.raises(sgd.SGDError):
        sgd.fit(x, y, **kwargs)


def _autograd_loop(x, y, a0, lr, steps):
    """The loop of the lesson, written here independently of the engine."""
    a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    x, y = x.double(), y.double()
    out = [a.detach().clone()]
    for _ in range(steps):
        loss = ((x @ a - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            a -= lr * a.grad
            a.grad.zero_()
        out.append(a.detach().clone())
    return torch.stack(out).numpy()


def test_numpy_fast_path_equals_the_torch_autograd_loop(data):
    x, y = data
    fast = sgd.fit(x, y, lr=0.1, steps=200).params
    assert np.allclose(fast, _autograd_loop(x, y, [-1.0, 1.0], 0.1, 200), rtol=0, atol=1e-12)
    # and in float32, as the lesson runs it, within float32 rounding
    a = torch.tensor([-1.0, 1.0], requires_grad=True)
    for _ in range(200):
        loss = ((x @ a - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            a -= 0.1 * a.grad
            a.grad.zero_()
    assert np.allclose(fast[-1], a.detach().numpy(), atol=1e-4)


@pytest.mark.parametrize("optimizer", sgd.OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [None, 7])
def test_fit_equals_engine_autograd_and_torch_optim(data, optimizer, batch_size):
    x, y = data
    kw = dict(lr=0.05, steps=60, optimizer=optimizer, batch_size=batch_size, seed=5)
    assert np.allclose(sgd.fit(x, y, **kw).params, sgd.fit_autograd(x, y, **kw), atol=1e-10)


def test_loss_surface_matches_direct_mse(data):
    x, y = data
    a1, a2 = np.linspace(-2, 5, 7), np.linspace(-1, 4, 5)
    z = sgd.loss_surface(x, y, a1, a2)
    assert z.shape == (5, 7)
    for j in (0, 3):
        for i in (1, 6):
            assert z[j, i] == pytest.approx(sgd.mse(x, y, (a1[i], a2[j])), rel=1e-9)
    best = sgd.least_squares(x, y)
    assert sgd.loss_surface(x, y, [best[0]], [best[1]])[0, 0] <= z.min()


def test_quadratic_regimes():
    assert [lr for _, lr in sgd.QUADRATIC_CASES] == [0.1, 0.85, 1.1]
    w_small, _ = sgd.quadratic_descent(0.1, steps=12)
    w_over, _ = sgd.quadratic_descent(0.85, steps=12)
    w_div, _ = sgd.quadratic_descent(1.1, steps=12)
    assert np.all(np.sign(w_small) == -1) and abs(w_small[-1]) < abs(w_small[0])
    assert np.any(np.sign(w_over) == 1) and abs(w_over[-1]) < abs(w_over[0])      # jumps across
    assert abs(w_div[-1]) > abs(w_div[0])
    w, _ = sgd.quadratic_descent(50.0, steps=100)
    assert len(w) < 101 and np.all(np.isfinite(w))                                  # stops cleanly


def test_frame_steps_keep_ends_and_limit():
    assert list(sgd.frame_steps(100, 100)) == list(range(101))
    f = sgd.frame_steps(1000, 1000, 200)
    assert len(f) <= 200 and f[0] == 0 and f[-1] == 1000
    assert list(sgd.frame_steps(100, 7)) == list(range(8))


def test_animation_figure_is_small_and_plays_in_the_browser(data):
    x, y = data
    res = sgd.fit(x, y, lr=0.1, steps=1000, batch_size=5)
    fig = sgd_figs.animation_figure(x, y, res, max_frames=200)
    assert len(fig["frames"]) == 200
    assert figures.figure_json_size(fig) < 2_000_000
    play = fig["layout"]["updatemenus"][0]["buttons"][0]
    assert play["method"] == "animate" and play["args"][1]["frame"]["redraw"] is False
    for frame in fig["frames"]:            # frames only touch scatter traces
        assert all(fig["data"][i]["type"] == "scatter" for i in frame["traces"])
    assert len(fig["layout"]["sliders"][0]["steps"]) == 200
    # plain JSON (no numpy left), and Plotly reads it back as the same figure
    text = json.dumps(fig)
    import plotly.graph_objects as go
    import plotly.io as pio
    back = pio.from_json(text, skip_invalid=False)
    assert isinstance(back, go.Figure) and len(back.frames) == 200
    last = fig["frames"][-1]["data"][3]
    assert np.allclose(figures.decode_typed_array(last["x"])[-1], res.params[-1, 0], atol=1e-5)
    assert fig["layout"]["images"][0]["source"].startswith("data:image/png;base64,")
    assert fig["layout"]["images"][0]["layer"] == "below"


def test_animation_of_a_diverged_run_is_clipped_and_finite(data):
    x, y = data
    res = sgd.fit(x, y, lr=5.0, steps=100)
    fig = sgd_figs.animation_figure(x, y, res, log_y=True)
    assert len(fig["frames"]) == res.diverged_at + 1
    text = json.dumps(fig["frames"][-1]["data"][-1]["text"])
    assert f"diverged at step {res.diverged_at}" in text
    xr, yr = fig["layout"]["xaxis3"]["range"], fig["layout"]["yaxis3"]["range"]
    for frame in fig["frames"]:
        px, py = (figures.decode_typed_array(frame["data"][3][k]) for k in "xy")
        assert np.all(np.isfinite(px)) and np.all(px >= xr[0] - 1e-4)
        assert np.all(px <= xr[1] + 1e-4) and np.all(py <= yr[1] + 1e-4)
        assert np.all(np.isfinite(figures.decode_typed_array(frame["data"][2]["y"])))
    assert all(np.isfinite(v) for v in fig["layout"]["yaxis2"]["range"])


def test_line_by_line_frames_walk_through_the_code(data):
    x, y = data
    res = sgd.fit(x, y, lr=0.1, steps=100)
    fig = sgd_figs.animation_figure(x, y, res, line_by_line=True, max_frames=41)
    highlighted = [int(-figures.decode_typed_array(f["data"][6]["y"])[0]) for f in fig["frames"][:8]]
    assert highlighted == [1, 2, 3, 5, 1, 2, 3, 5]
    labels = [s["label"] for s in fig["layout"]["sliders"][0]["steps"][:4]]
    assert labels == ["1 · predict", "1 · loss", "1 · backward", "1 · update"]


def test_critical_lr_is_two_over_the_steepest_curvature(data):
    x, _ = data
    lam = sgd.steepest_curvature(x)
    assert lam == pytest.approx(float(np.linalg.eigvalsh(sgd.hessian(x)).max()), rel=1e-12)
    assert sgd.critical_lr(x) == pytest.approx(2.0 / lam, rel=1e-12)
    assert sgd.critical_lr(x, momentum=0.9) == pytest.approx(2.0 * 1.9 / lam, rel=1e-12)


def test_parse_learning_rates_reads_two_to_four_rates():
    assert sgd.parse_learning_rates("0.01, 0.1; 1") == [0.01, 0.1, 1.0]
    assert sgd.parse_learning_rates(" 0.0001,10 ") == [1e-4, 10.0]
    for text, words in [("0.1, fast", "“fast” is not a number"), ("0.1", "(got 1)"),
                        ("0.1, 50", "50 is outside 0.0001 … 10"), ("0.1, nan", "outside"),
                        ("1, 2, 3, 4, 5", "(got 5)")]:
        with pytest.raises(sgd.SGDError, match=words.replace("(", r"\(").replace(")", r"\)")):
            sgd.parse_learning_rates(text)


def test_engine_sgd_holds_maths_only():
    """Figures are drawn in ui/sgd_figs.py: the engine module imports neither Plotly nor ui/."""
    import ast
    from pathlib import Path

    source = Path(sgd.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"plotly", "ui", "streamlit", "PIL", "skimage"}
