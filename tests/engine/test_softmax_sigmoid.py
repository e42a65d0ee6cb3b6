"""The SGD page's softmax box (engine.sgd.softmax / cross_entropy) against torch.softmax and
F.cross_entropy, and the Kernel Playground's sigmoid against torch.sigmoid."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from engine import kernels, sgd


@pytest.mark.parametrize("scores", [[2.0, 1.0, -1.0], [0.0, 0.0, 0.0], [10.0, -10.0, 3.3],
                                    [-10.0, -10.0, -9.9], [700.0, 0.0, -700.0]])
@pytest.mark.parametrize("actual", [0, 1, 2])
def test_softmax_and_cross_entropy_match_torch(scores, actual):
    z = torch.tensor([scores], dtype=torch.float64)
    np.testing.assert_allclose(sgd.softmax(scores), torch.softmax(z, 1)[0].numpy(), rtol=1e-12,
                               atol=1e-300)
    want = functional.cross_entropy(z, torch.tensor([actual])).item()
    assert sgd.cross_entropy(scores, actual) == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert np.isfinite(sgd.cross_entropy(scores, actual))
    assert sgd.softmax(scores).sum() == pytest.approx(1.0)


def test_cross_entropy_is_minus_ln_of_the_actual_probability():
    z = [1.5, -0.5, 0.25]
    for actual in range(3):
        assert sgd.cross_entropy(z, actual) == pytest.approx(-np.log(sgd.softmax(z)[actual]))
    with pytest.raises(sgd.SGDError):
        sgd.cross_entropy(z, 3)


def test_sigmoid_matches_torch_and_never_overflows():
    x = np.array([-1e6, -800.0, -3.0, 0.0, 0.5, 40.0, 1e6], np.float32)
    np.testing.assert_allclose(kernels.sigmoid(x), torch.sigmoid(torch.tensor(x)).numpy(), atol=1e-7)
    assert kernels.sigmoid(np.zeros((2, 2))).dtype == np.float32


def test_a_sigmoid_layer_squeezes_the_map_into_0_1():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 20)).astype(np.uint8)
    plain, squeezed = kernels.apply_layers(img, [kernels.Layer(kernels.PRESETS["top sobel"]),
                                                 kernels.Layer(kernels.PRESETS["top sobel"],
                                                               sigmoid=True)])
    assert plain.min() < 0 < plain.max()
    np.testing.assert_allclose(squeezed, kernels.sigmoid(kernels.apply_kernel(plain, kernels.PRESETS["top sobel"])))
    assert 0.0 <= squeezed.min() and squeezed.max() <= 1.0
