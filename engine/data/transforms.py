"""Transforms. Each file is resized and cropped once, when it is decoded (OpenCV, like
engine.images); augmentation and normalisation then run on whole uint8 batches
(torchvision.transforms.v2), with random parameters drawn per image. Per-image transform calls
cost more than the training step itself on a 2-core CPU; one call per batch costs almost nothing.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional
from torchvision.transforms import v2

from engine.data.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): shorter side to `size`, then the centre square."""
    import cv2
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    # Area averaging when shrinking keeps detail; bilinear when enlarging (the 8x8 digits).
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interp)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(out[top:top + size, left:left + size])


class BatchAugment(v2.Transform):
    """fastai-style augmentation of a float batch (B, 3, H, W) in [0, 1], new values per image:
    horizontal flip (p 0.5), rotation up to ±max_rotate degrees and zoom-in up to max_zoom
    with a random centre (p 0.75, one resampling, reflection padding by default as fastai; "zeros"
    suits digits on black), brightness and
    contrast within ±max_lighting (p 0.75).
    """

    def __init__(self, *, flip: bool = True, max_rotate: float = 10.0, max_zoom: float = 1.1,
                 max_lighting: float = 0.2, pad_mode: str = "reflection", p_affine: float = 0.75,
                 p_lighting: float = 0.75):
        super().__init__()
        self.pad_mode = pad_mode
        self.flip, self.max_rotate, self.max_zoom = flip, max_rotate, max(1.0, max_zoom)
        self.max_lighting, self.p_affine, self.p_lighting = max_lighting, p_affine, p_lighting

    def make_params(self, flat_inputs: list) -> dict:
        b = flat_inputs[0].shape[0]
        u = lambda lo, hi: torch.empty(b).uniform_(lo, hi)  # noqa: E731
        on = torch.rand(b) < self.p_affine
        angle = torch.where(on, u(-self.max_rotate, self.max_rotate), 0.0) * (math.pi / 180)
        zoom = torch.where(on, u(1.0, self.max_zoom), 1.0)
        room = 1.0 - 1.0 / zoom                    # how far the zoomed window can move
        shift = (torch.rand(b, 2) * 2 - 1) * room[:, None]
        mirror = torch.where(torch.rand(b) < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        lit = torch.rand(b) < self.p_lighting
        L = self.max_lighting
        bright = torch.where(lit, u(1 - L, 1 + L), 1.0)
        contrast = torch.where(lit, u(1 - L, 1 + L), 1.0)
        return dict(angle=angle, zoom=zoom, shift=shift, mirror=mirror, bright=bright,
                    contrast=contrast)

    def transform(self, inpt, params: dict):
        x = inpt                                                       # (B, 3, H, W) float
        cos, sin = params["angle"].cos(), params["angle"].sin()
        z, m = params["zoom"], params["mirror"]
        # Output pixel (u, v) samples input at R(angle) @ diag(mirror, 1) @ (u, v) / zoom + shift.
        theta = torch.stack([torch.stack([cos * m / z, -sin / z, params["shift"][:, 0]], -1),
                             torch.stack([sin * m / z, cos / z, params["shift"][:, 1]], -1)],
                            1).to(x.dtype)                             # (B, 2, 3)
        grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
        x = functional.grid_sample(x, grid, mode="bilinear", padding_mode=self.pad_mode,
                                   align_corners=False)
        x = x * params["bright"].view(-1, 1, 1, 1).to(x.dtype)
        grey = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - grey) * params["contrast"].view(-1, 1, 1, 1).to(x.dtype) + grey
        return x.clamp_(0.0, 1.0)


def batch_augment(cfg: DataConfig) -> BatchAugment:
    """The training augmentation of cfg as a v2 transform on float batches in [0, 1]."""
    return BatchAugment(flip=cfg.flip, max_rotate=cfg.max_rotate, max_zoom=cfg.max_zoom,
                        max_lighting=cfg.max_lighting, pad_mode=cfg.pad_mode)


def train_transforms(cfg: DataConfig):
    """uint8 batch (B, 3, S, S) -> float32 normalised, augmented when cfg.augment."""
    steps = [v2.ToDtype(torch.float32, scale=True)]
    if cfg.augment:
        steps.append(batch_augment(cfg))
    steps.append(v2.Normalize(list(cfg.mean), list(cfg.std)))
    return v2.Compose(steps)


def valid_transforms(cfg: DataConfig):
    """uint8 batch -> float32 normalised; validation images are never augmented."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(cfg.mean), list(cfg.std))])


def denormalize(x, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Normalised float (B, 3, H, W) or (3, H, W) -> uint8 (B, H, W, 3) or (H, W, 3) for display."""
    x = torch.as_tensor(x).detach().float().cpu()
    m = torch.tensor(list(mean)).view(-1, 1, 1)
    s = torch.tensor(list(std)).view(-1, 1, 1)
    img = ((x * s + m).clamp(0, 1) * 255).round().to(torch.uint8)
    return img.movedim(-3, -1).numpy()


__all__ = ["resize_crop", "BatchAugment", "batch_augment", "train_transforms", "valid_transforms",
           "denormalize"]
