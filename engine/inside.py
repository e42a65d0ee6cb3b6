"""Inside a trained network: the kernels its first layer learned, and the feature maps each stage
of its body makes of one image.

The Explorer's Inside tab draws what these return; engine.interpret re-exports
`first_layer_kernels` and `feature_maps` (the names the issue gave them). Pure functions of a model
and arrays: no figures here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

#: Where each stage of a Classifier's body ends, per architecture: (index into body, name). A stage
#: is what a learner would call one step of the network (a ResNet's stem, max-pool and its four
#: layers; EfficientNet's stem, its seven block stages and its head convolution; simple_cnn's four
#: conv blocks). Batch norms and activations belong to the stage before them.
_RESNET = ((2, "stem: conv1 7×7 · bn · ReLU"), (3, "max-pool"), (4, "layer1"), (5, "layer2"),
           (6, "layer3"), (7, "layer4"))
STAGES: dict[str, tuple[tuple[int, str], ...]] = {
    "resnet18": _RESNET, "resnet34": _RESNET, "resnet50": _RESNET,
    "efficientnet_lite0": ((1, "stem: conv 3×3 · bn · ReLU6"),
                           *((2 + i, f"blocks.{i}") for i in range(7)),
                           (10, "head: conv 1×1 · bn · ReLU6")),
    "simple_cnn": ((0, "block 1: conv 3×3 · bn · ReLU"), (1, "block 2: conv 3×3 stride 2 · bn · ReLU"),
                   (2, "block 3: conv 3×3 stride 2 · bn · ReLU"),
                   (3, "block 4: conv 3×3 stride 2 · bn · ReLU")),
}


class InsideError(ValueError):
    """A model or input the Inside view cannot show; the message is a sentence for the user."""


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first convolution in forward order (the first Conv2d registered)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise InsideError("This model has no convolutional layer, so it has no kernels to show.")


def first_layer_kernels(model: nn.Module) -> np.ndarray:
    """The first convolution's weights as float32 (out_channels, in_channels, kh, kw): one kernel
    per output channel, one kh × kw slice of it per input channel (red, green, blue)."""
    return first_conv(model).weight.detach().float().cpu().numpy().copy()


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every stage whose output feature_maps reports, in forward order.

    Our Classifier's body is cut by STAGES; any other model reports each of its convolutions."""
    body, arch = getattr(model, "body", None), getattr(model, "arch", None)
    if isinstance(body, nn.Sequential) and arch in STAGES:
        ends = [(i, name) for i, name in STAGES[arch] if i < len(body)]
        return [(name, body[i]) for i, name in ends]
    return [(name or "conv", m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """What each stage of the body makes of one preprocessed image x, (3, H, W) or (1, 3, H, W):
    [(stage name, float32 activations (C, h, w))], from the first layer to the last before the head.

    The model runs in eval mode (batch norm with its running statistics, as it predicts) and is
    left as it was: its mode restored, its hooks removed."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise InsideError(f"feature_maps takes one image of shape (3, H, W); got {tuple(x.shape)}.")
    named = stages(model)
    out: list[tuple[str, np.ndarray]] = []
    handles = []

    def keeper(name: str):
        def keep(_m: nn.Module, _inp: object, act: torch.Tensor) -> None:
            # A copy: a later in-place activation must not change what was recorded.
            out.append((name, act[0].detach().float().cpu().numpy().copy()))
        return keep

    for name, module in named:
        handles.append(module.register_forward_hook(keeper(name)))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        model(x.to(param.device if param is not None else "cpu"))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return out


def most_active(fmap: np.ndarray, k: int | None = None) -> np.ndarray:
    """Channel indices of a (C, h, w) map, the largest mean activation first (ties by index)."""
    means = np.asarray(fmap, np.float64).reshape(len(fmap), -1).mean(1)
    order = np.argsort(-means, kind="stable")
    return order if k is None else order[:max(0, int(k))]


def shrink(plane: np.ndarray, side: int) -> np.ndarray:
    """A (h, w) map no larger than side × side (each output pixel the average of the pixels it
    covers), so a picture of many maps stays small."""
    import cv2

    m = np.asarray(plane, np.float32)
    h, w = m.shape
    if max(h, w) <= side:
        return m
    scale = side / max(h, w)
    return cv2.resize(m, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def centre3(kernel: np.ndarray) -> np.ndarray:
    """The 3×3 centre of a (kh, kw) kernel with odd sides (the kernel itself when it is 3×3)."""
    k = np.asarray(kernel)
    kh, kw = k.shape[-2:]
    if kh < 3 or kw < 3:
        raise InsideError(f"A {kh}×{kw} kernel has no 3×3 centre.")
    top, left = (kh - 3) // 2, (kw - 3) // 2
    return k[..., top:top + 3, left:left + 3]


def grey_kernel(kernel: np.ndarray, std: Sequence[float] | None = None) -> np.ndarray:
    """One (in, kh, kw) kernel as the single (kh, kw) kernel it is on a grey photo.

    On a grey photo the red, green and blue values of a pixel are equal, so the three slices add
    up into one kernel. The network divides each channel by its spread (std) before the kernel,
    so each slice is weighted by 1/std; the mean it subtracts only shifts the whole response."""
    k = np.asarray(kernel, np.float64)
    scale = np.ones(len(k)) if std is None else 1.0 / np.asarray(std, np.float64)
    if scale.shape != (len(k),):
        raise InsideError(f"Expected one std per input channel ({len(k)}), got {len(scale)}.")
    return (k * scale[:, None, None]).sum(0)


def playground_cells(kernel: np.ndarray, digits: int = 3) -> list[str]:
    """A 3×3 kernel as the nine cell texts of the Kernel Playground, to `digits` significant digits."""
    k = np.asarray(kernel, np.float64)
    if k.shape != (3, 3):
        raise InsideError(f"The playground takes a 3×3 kernel, not {k.shape[0]}×{k.shape[1]}.")
    return [f"{v:.{digits}g}" if v != 0 else "0" for v in k.ravel()]


def unit_scale(values: np.ndarray, symmetric: bool = True) -> np.ndarray:
    """Values mapped to 0…1 for a picture: symmetric around 0 → 0.5 (weights), or min…max (maps).
    A constant array becomes 0.5 (symmetric) or 0."""
    v = np.asarray(values, np.float64)
    if symmetric:
        m = float(np.abs(v).max()) if v.size else 0.0
        return np.full_like(v, 0.5) if m == 0 else 0.5 + v / (2 * m)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    return np.zeros_like(v) if hi <= lo else (v - lo) / (hi - lo)


def tile_grid(tiles: Sequence[np.ndarray], cols: int, gap: int = 1) -> np.ndarray:
    """Equal-shape tiles (h, w) or (h, w, 3) laid out row by row, `cols` to a row, with NaN gaps:
    one array for one picture. Returns float64 (rows·(h+gap)−gap, cols·(w+gap)−gap[, 3])."""
    if not len(tiles):
        return np.zeros((0, 0))
    first = np.asarray(tiles[0])
    h, w = first.shape[:2]
    cols = max(1, min(int(cols), len(tiles)))
    rows = -(-len(tiles) // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap) + first.shape[2:], np.nan)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t
    return out


__all__ = ["STAGES", "InsideError", "first_conv", "first_layer_kernels", "stages", "feature_maps",
           "most_active", "shrink", "centre3", "grey_kernel", "playground_cells", "unit_scale", "tile_grid"]
