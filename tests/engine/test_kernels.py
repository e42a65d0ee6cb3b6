"""apply_kernel and friends against trusted references (torch's conv2d, brute-force sums)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from engine import kernels

TORCH_PAD = {"zero": "constant", "reflect": "reflect", "replicate": "replicate"}


def torch_reference(image: np.ndarray, kernel: np.ndarray, border: str = "zero") -> np.ndarray:
    """Per-channel torch conv2d (a cross-correlation) with padding 1, as the issue specifies."""
    img = torch.from_numpy(image.astype(np.float64))
    chans = img[None, None] if img.ndim == 2 else img.permute(2, 0, 1)[:, None]   # (C, 1, H, W)
    chans = functional.pad(chans, (1, 1, 1, 1), mode=TORCH_PAD[border])
    w = torch.from_numpy(kernel.astype(np.float64))[None, None]
    out = functional.conv2d(chans, w)[:, 0]                                       # (C, H, W)
    return (out[0] if image.ndim == 2 else out.permute(1, 2, 0)).numpy()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


REQUIRED = ["identity", "blur", "sharpen", "outline", "emboss",
            "top sobel", "bottom sobel", "left sobel", "right sobel"]


def test_presets_have_the_required_names_and_values():
    assert set(REQUIRED) <= set(kernels.PRESETS)
    assert np.allclose(kernels.PRESETS["blur"] * 16, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert np.allclose(kernels.PRESETS["right sobel"], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    assert np.allclose(kernels.PRESETS["top sobel"], [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    assert np.allclose(kernels.PRESETS["bottom sobel"], -kernels.PRESETS["top sobel"])
    assert np.allclose(kernels.PRESETS["left sobel"], -kernels.PRESETS["right sobel"])
    for k in kernels.PRESETS.values():
        assert k.shape == (3, 3)


@pytest.mark.parametrize("name", sorted(kernels.PRESETS))
@pytest.mark.parametrize("shape", [(37, 53), (29, 41, 3)])
def test_every_preset_matches_torch_conv2d(name, shape, rng):
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    out = kernels.apply_kernel(image, kernels.PRESETS[name])
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.abs(out - torch_reference(image, kernels.PRESETS[name])).max() <= 1e-3


@pytest.mark.parametrize("border", kernels.BORDERS)
def test_random_kernels_match_torch_for_every_border(border, rng):
    for _ in range(5):
        image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
        kernel = rng.normal(size=(3, 3)).astype(np.float32)
        diff = np.abs(kernels.apply_kernel(image, kernel, border=border)
                      - torch_reference(image, kernel, border))
        assert diff.max() <= 1e-3


def test_no_kernel_flip_is_applied(rng):
    # A kernel with a single 1 at the top-left reads the pixel up-left: out[y, x] = img[y-1, x-1].
    image = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    k = np.zeros((3, 3), np.float32)
    k[0, 0] = 1
    out = kernels.apply_kernel(image, k)
    assert np.array_equal(out[1:, 1:], image[:-1, :-1].astype(np.float32))
    assert np.all(out[0, :] == 0) and np.all(out[:, 0] == 0)


def test_relu_zeroes_negatives_only(rng):
    image = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    raw = kernels.apply_kernel(image, kernels.PRESETS["outline"])
    rel = kernels.apply_kernel(image, kernels.PRESETS["outline"], relu=True)
    assert raw.min() < 0
    assert np.array_equal(rel, np.maximum(raw, 0))


def test_borders_differ_only_at_the_edge(rng):
    image = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    outs = {b: kernels.apply_kernel(image, kernels.PRESETS["outline"], border=b) for b in kernels.BORDERS}
    for b in ("reflect", "replicate"):
        assert np.array_equal(outs[b][1:-1, 1:-1], outs["zero"][1:-1, 1:-1])
        assert not np.array_equal(outs[b], outs["zero"])


def test_float_input_is_accepted_for_stacked_layers(rng):
    image = rng.normal(size=(15, 17)).astype(np.float32)
    out = kernels.apply_kernel(image, kernels.PRESETS["sharpen"])
    assert np.abs(out - torch_reference(image, kernels.PRESETS["sharpen"])).max() <= 1e-3


@pytest.mark.parametrize("border", kernels.BORDERS)
@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 3)])
def test_explain_pixel_sum_equals_apply_kernel(border, shape, rng):
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    kernel = rng.normal(size=(3, 3)).astype(np.float32)
    out = kernels.apply_kernel(image, kernel, border=border)
    for y, x in [(0, 0), (0, 10), (8, 0), (8, 10), (4, 5), (0, 5)]:
        ex = kernels.explain_pixel(image, kernel, y, x, border=border)
        assert np.allclose(ex.products, ex.patch * (kernel[:, :, None] if len(shape) == 3 else kernel))
        assert np.allclose(ex.total, out[y, x], atol=1e-3)
        assert np.allclose(ex.total, ex.products.sum(axis=(0, 1)))


def test_explain_pixel_rejects_outside():
    with pytest.raises(ValueError):
        kernels.explain_pixel(np.zeros((5, 5), np.uint8), kernels.PRESETS["blur"], 5, 0)


def test_stacked_layers_match_sequential_application(rng):
    image = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    layers = [kernels.Layer(kernels.PRESETS["blur"], relu=True),
              kernels.Layer(kernels.PRESETS["outline"], relu=False)]
    maps = kernels.apply_layers(image, layers)
    first = np.maximum(torch_reference(image, kernels.PRESETS["blur"]), 0)
    assert np.abs(maps[0] - first).max() < 1e-3
    assert np.abs(maps[1] - torch_reference(first, kernels.PRESETS["outline"])).max() < 1e-2


def test_two_linear_layers_are_one_5x5_kernel(rng):
    image = rng.integers(0, 256, (20, 20), dtype=np.uint8).astype(np.float64)
    k1, k2 = kernels.PRESETS["blur"], kernels.PRESETS["right sobel"]
    two = kernels.apply_layers(image.astype(np.float32), [kernels.Layer(k1), kernels.Layer(k2)])[1]
    big = kernels.compose_linear(k1, k2)
    w = torch.from_numpy(big)[None, None]
    one = functional.conv2d(torch.from_numpy(image)[None, None], w)[0, 0].numpy()  # valid region only
    assert np.abs(two[2:-2, 2:-2] - one).max() < 1e-2


@pytest.mark.parametrize("text,value", [("1", 1), ("-1", -1), ("0.25", 0.25), ("1/16", 1 / 16),
                                         ("-2/4", -0.5), (" 3 ", 3), ("1e-2", 0.01), ("−1", -1),
                                         (".5", 0.5)])
def test_parse_cell_accepts_numbers_and_fractions(text, value):
    assert kernels.parse_cell(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "  ", "abc", "nan", "NaN", "inf", "-inf", "1/0", "1e999",
                                  "2**3", "1/2/3", "__import__('os')"])
def test_parse_cell_rejects_with_a_sentence(text):
    with pytest.raises(kernels.KernelError) as err:
        kernels.parse_cell(text)
    assert len(str(err.value)) > 20


def test_parse_kernel_names_the_bad_cell():
    cells = ["0"] * 9
    cells[5] = "x"
    with pytest.raises(kernels.KernelError, match="Row 2, column 3"):
        kernels.parse_kernel(cells)
    emboss = kernels.PRESETS["emboss"]
    assert np.array_equal(kernels.parse_kernel(kernels.kernel_to_text(emboss)), emboss)


@pytest.mark.parametrize("mode", kernels.DISPLAY_MODES)
def test_render_response_modes(mode, rng):
    r = rng.normal(scale=100, size=(8, 9)).astype(np.float32)
    out = kernels.render_response(r, mode)
    assert out.image.dtype == np.uint8
    if mode == "clip":
        assert np.array_equal(out.image, np.clip(r, 0, 255).astype(np.uint8))
    elif mode == "abs":
        assert out.image.max() == 255 and out.scale == pytest.approx(np.abs(r).max())
    else:
        assert out.image.shape == (8, 9, 3)
        zero = kernels.render_response(np.zeros((2, 2), np.float32), "diverging").image
        assert np.all(zero[..., 0] == zero[..., 1])  # zero maps to the neutral (white) middle


def test_safe_learning_rate_is_one_over_the_largest_curvature(rng):
    x = rng.random((12, 12))
    lr = kernels.safe_learning_rate(x)
    # Brute-force Hessian of the mean squared response in the nine weights.
    from numpy.lib.stride_tricks import sliding_window_view
    p = sliding_window_view(np.pad(x, 1), (3, 3)).reshape(-1, 9)
    assert lr == pytest.approx(1 / np.linalg.eigvalsh(2 * p.T @ p / len(p)).max())


@pytest.mark.parametrize("hidden", ["sharpen", "right sobel", "blur"])
def test_learning_recovers_a_hidden_kernel(hidden):
    from engine.samples import load_sample
    image = load_sample("chelsea")
    steps = list(kernels.learn_kernel(image, kernels.PRESETS[hidden], kernels.LearnConfig(steps=400, size=64),
                                report_every=50))
    assert steps[-1].loss < steps[0].loss * 1e-3
    assert np.abs(steps[-1].kernel - kernels.PRESETS[hidden]).max() < 0.05


@pytest.mark.parametrize("border", kernels.BORDERS)
def test_rank_one_kernels_take_the_separable_path_and_still_match_torch(border, rng):
    image = rng.integers(0, 256, (21, 26, 3), dtype=np.uint8)
    for _ in range(4):
        kernel = np.outer(rng.normal(size=3), rng.normal(size=3)).astype(np.float32)
        assert kernels._separable(kernel) is not None
        diff = np.abs(kernels.apply_kernel(image, kernel, border=border)
                      - torch_reference(image, kernel, border))
        assert diff.max() <= 1e-3
    assert kernels._separable(kernels.PRESETS["sharpen"]) is None


def test_a_diverging_learning_rate_stops_cleanly():
    from engine.samples import load_sample
    cfg = kernels.LearnConfig(steps=300, size=48, lr_scale=2.5, momentum=0.0)
    steps = list(kernels.learn_kernel(load_sample("camera"), kernels.PRESETS["blur"], cfg, report_every=10))
    assert steps[-1].step < 300                      # stopped early...
    assert steps[-1].loss > 1e6 * steps[0].loss or not np.isfinite(steps[-1].loss)
