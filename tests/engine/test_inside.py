"""Inside a network (engine.inside, re-exported by engine.interpret): the first layer's kernels are
the first Conv2d's weights, and the feature maps are what forward hooks written here record, for
every architecture engine.models builds (no download: pretrained=False). Also the top losses'
p(actual) and −ln p(actual), and the Kernel Playground's view of a learned kernel."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from engine import inside, interpret
from engine.kernels import parse_kernel
from engine.models import create_model
from engine.settings import ARCH_NAMES

#: For each architecture: its first convolution, found by its place in the model (not by searching),
#: and the kernel shape it has.
FIRST_CONV = {
    "resnet18": (lambda m: m.body[0], (64, 3, 7, 7)),
    "resnet34": (lambda m: m.body[0], (64, 3, 7, 7)),
    "resnet50": (lambda m: m.body[0], (64, 3, 7, 7)),
    "efficientnet_lite0": (lambda m: m.body[0], (32, 3, 3, 3)),
    "simple_cnn": (lambda m: m.body[0][0], (32, 3, 3, 3)),
}
#: The modules after which each architecture's stages end, written out by hand for the hooks below.
STAGE_MODULES = {
    "resnet18": lambda m: [m.body[i] for i in (2, 3, 4, 5, 6, 7)],
    "resnet34": lambda m: [m.body[i] for i in (2, 3, 4, 5, 6, 7)],
    "resnet50": lambda m: [m.body[i] for i in (2, 3, 4, 5, 6, 7)],
    "efficientnet_lite0": lambda m: [m.body[1], *m.body[2:9], m.body[10]],
    "simple_cnn": lambda m: list(m.body),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {arch: create_model(arch, 3, pretrained=False) for arch in ARCH_NAMES}


def test_every_architecture_is_covered():
    assert set(FIRST_CONV) == set(ARCH_NAMES) == set(STAGE_MODULES) == set(inside.STAGES)


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_first_layer_kernels_are_the_first_conv_weights(models, arch):
    model = models[arch]
    conv, shape = FIRST_CONV[arch]
    got = interpret.first_layer_kernels(model)
    assert isinstance(conv(model), nn.Conv2d)
    assert got.shape == shape and got.dtype == np.float32
    assert np.array_equal(got, conv(model).weight.detach().numpy())
    got[0, 0, 0, 0] += 1.0   # a copy: changing it leaves the model alone
    assert not np.array_equal(got, conv(model).weight.detach().numpy())


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_feature_maps_match_forward_hooks(models, arch):
    model = models[arch]
    model.train()   # feature_maps must run in eval mode and put the mode back
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    recorded: list[torch.Tensor] = []
    modules = STAGE_MODULES[arch](model)
    handles = [m.register_forward_hook(lambda _m, _i, out: recorded.append(out.detach().clone()))
               for m in modules]
    model.eval()
    with torch.no_grad():
        model(x[None])
    for h in handles:
        h.remove()
    model.train()

    maps = interpret.feature_maps(model, x)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert [name for name, _ in maps] == [name for _, name in inside.STAGES[arch]]
    assert len(maps) == len(recorded)
    for (name, got), want in zip(maps, recorded):
        assert got.shape == tuple(want.shape[1:]), name
        np.testing.assert_allclose(got, want[0].numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
    # the shapes shrink and the channels grow along the way, as a learner should see
    assert maps[0][1].shape[1] >= maps[-1][1].shape[1]
    assert maps[0][1].shape[0] <= maps[-1][1].shape[0]


def test_feature_maps_takes_a_batch_of_one_and_refuses_more(models):
    model = models["simple_cnn"]
    x = torch.randn(1, 3, 16, 16)
    assert [m.shape for _, m in inside.feature_maps(model, x)] == \
        [m.shape for _, m in inside.feature_maps(model, x[0])]
    with pytest.raises(inside.InsideError):
        inside.feature_maps(model, torch.randn(2, 3, 16, 16))


def test_a_model_without_our_body_reports_each_convolution():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2))
    maps = inside.feature_maps(model, torch.randn(3, 11, 11))
    assert [(n, m.shape) for n, m in maps] == [("0", (4, 9, 9)), ("2", (2, 4, 4))]
    np.testing.assert_array_equal(inside.first_layer_kernels(model), model[0].weight.detach().numpy())
    with pytest.raises(inside.InsideError):
        inside.first_layer_kernels(nn.Linear(2, 2))


def test_most_active_centre_and_tiles():
    fmap = np.zeros((4, 2, 2), np.float32)
    fmap[2] += 3
    fmap[0] += 1
    fmap[3] += 1
    assert inside.most_active(fmap).tolist() == [2, 0, 3, 1]
    assert inside.most_active(fmap, 2).tolist() == [2, 0]
    k = np.arange(49.0).reshape(7, 7)
    np.testing.assert_array_equal(inside.centre3(k), k[2:5, 2:5])
    np.testing.assert_array_equal(inside.centre3(k[:3, :3]), k[:3, :3])
    grid = inside.tile_grid([np.ones((2, 3)) * i for i in range(5)], cols=2, gap=1)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)
    assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[3, 0] == 2 and grid[6, 0] == 4
    assert np.isnan(grid[2, 0]) and np.isnan(grid[6, 4])
    assert inside.shrink(np.ones((112, 56)), 28).shape == (28, 14)
    scaled = inside.unit_scale(np.array([-2.0, 0.0, 1.0]))
    np.testing.assert_allclose(scaled, [0.0, 0.5, 0.75])


def test_the_grey_kernel_is_exact_on_a_grey_photo():
    """On a grey photo, normalised per channel as a run does, the three slices of a learned kernel
    act as the one grey kernel plus a constant (the mean's shift)."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    grey = rng.uniform(0, 1, (12, 12))
    x = (grey[None] - mean[:, None, None]) / std[:, None, None]          # (3, H, W)
    full = functional.conv2d(torch.tensor(x)[None], torch.tensor(kernel)[None])[0, 0]
    one = functional.conv2d(torch.tensor(grey)[None, None],
                            torch.tensor(inside.grey_kernel(kernel, std))[None, None])[0, 0]
    shift = full - one
    np.testing.assert_allclose(shift.numpy(), float(shift[0, 0]), atol=1e-9)


def test_playground_cells_read_back_in_the_playground():
    k = np.array([[0.01234, -1.5, 0.0], [2.0, 1e-5, -0.333333], [123.456, 0.5, -7.0]])
    cells = inside.playground_cells(k)
    assert cells[2] == "0" and cells[1] == "-1.5"
    np.testing.assert_allclose(parse_kernel(cells), k, rtol=1e-2)


def _preds(seed: int = 0):
    from engine.evaluation import predictions

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with torch.no_grad():
        model[1].weight.mul_(8)   # sure predictions, some of them wrong: large and tiny losses
    xs, ys = torch.randn(40, 3, 2, 2), torch.randint(0, 4, (40,))
    loader = [(xs[i:i + 8], ys[i:i + 8]) for i in range(0, 40, 8)]
    return predictions(model, loader, 4, lambda a, b: (a, b), contextlib.nullcontext)


def test_top_loss_is_minus_ln_p_actual():
    preds = _preds()
    p_actual = interpret.actual_probs(preds.probs, preds.targets)
    np.testing.assert_allclose(p_actual, preds.probs[np.arange(40), preds.targets])
    values, order = interpret.top_losses(preds.losses, 8)
    np.testing.assert_allclose(values, interpret.loss_from_prob(p_actual[order]), rtol=1e-4,
                               atol=1e-5)
    assert values[0] > 1.0   # a confident mistake is among them
    assert interpret.loss_from_prob(1.0) == 0.0 and interpret.loss_from_prob(0.0) == np.inf
    with pytest.raises(interpret.InterpretError):
        interpret.actual_probs(preds.probs, preds.targets[:3])
