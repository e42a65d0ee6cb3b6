"""Transforms. Each file is resized and cropped once, when it is decoded (OpenCV, like
engine.images); augmentation (fastai's aug_transforms) and normalisation then run on whole uint8
batches (torchvision.transforms.v2), with random parameters drawn per image. Per-image transform calls
cost more than the training step itself on a 2-core CPU; one call per batch costs almost nothing.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional
from torchvision.transforms import v2

from engine.data.config import IMAGENET_MEAN, IMAGENET_STD, MAX_SIZE, MIN_SIZE, DataConfig


def resize_crop(image: np.ndarray, size: int,
                pct: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): shorter side to `size`, then a square.

    pct: where the square sits along the width and the height, 0 (left/top) to 1 (right/bottom),
    as fastai's Resize draws it at random for training images; None: the centre (validation).

    Memory is bounded whatever the array: `size` must lie in MIN_SIZE..MAX_SIZE, and an image
    outside engine.images' shape policy (a strip that scaling would blow up to gigabytes) raises
    ImageError, as load_image would have; the scaled copy then holds at most MAX_ASPECT·size² pixels.
    """
    import cv2

    from engine.images import ImageError, check_shape
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or not MIN_SIZE <= size <= MAX_SIZE:
        raise ImageError(f"An image side of {size!r} pixels is outside {MIN_SIZE}…{MAX_SIZE}.")
    size = int(size)
    h, w = image.shape[:2]
    problem = check_shape(w, h)
    if problem:
        raise ImageError(problem)
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    # Area averaging when shrinking keeps detail; bilinear when enlarging (the 8x8 digits).
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interp)
    if pct is None:
        top, left = (new_h - size) // 2, (new_w - size) // 2
    else:   # as fastai's Resize: int(pct * room)
        left, top = int(pct[0] * (new_w - size)), int(pct[1] * (new_h - size))
    return np.ascontiguousarray(out[top:top + size, left:left + size])


def _logit(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(1e-7, 1 - 1e-7)       # as fastai's, so black and white pixels stay finite
    return -(1 / x - 1).log()


def _perspective(coords: torch.Tensor, warp: torch.Tensor) -> torch.Tensor:
    """fastai's Warp on sampling coordinates (B, H, W, 2) in [-1, 1]: the homography that moves
    the corners (-1, -1), (-1, 1), (1, -1), (1, 1) by the per-image magnitudes warp (B, 2)."""
    b = coords.shape[0]
    xt, yt = warp[:, 0], warp[:, 1]
    src = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]],
                       dtype=coords.dtype).expand(b, 4, 2)
    dst = torch.stack([torch.stack([-1 - yt, -1 - xt], -1), torch.stack([-1 + yt, 1 + xt], -1),
                       torch.stack([1 + yt, -1 + xt], -1), torch.stack([1 - yt, 1 - xt], -1)],
                      1).to(coords.dtype)                                        # (B, 4, 2)
    # Solve for the 8 coefficients of H with H(dst_i) = src_i (fastai's find_coeffs).
    zero, one = torch.zeros(b, dtype=coords.dtype), torch.ones(b, dtype=coords.dtype)
    rows = []
    for i in range(4):
        (px, py), (qx, qy) = src[:, i].unbind(-1), dst[:, i].unbind(-1)
        rows.append(torch.stack([qx, qy, one, zero, zero, zero, -px * qx, -px * qy], -1))
        rows.append(torch.stack([zero, zero, zero, qx, qy, one, -py * qx, -py * qy], -1))
    coeffs = torch.linalg.solve(torch.stack(rows, 1), src.reshape(b, 8, 1))     # (B, 8, 1)
    h = torch.cat([coeffs[:, :, 0], one[:, None]], 1).view(b, 3, 3)
    flat = coords.reshape(b, -1, 2)
    out = flat @ h[:, :, :2].transpose(1, 2) + h[:, :, 2].unsqueeze(1)            # (B, N, 3)
    if (out[..., 2] == 0).any():
        return coords
    return (out[..., :2] / out[..., 2:]).view_as(coords)


class BatchAugment(v2.Transform):
    """fastai's aug_transforms on a float batch (B, 3, H, W) in [0, 1], drawn per image with
    torch's random generator (so a seed repeats them):
      flip        mirror left-right, p 0.5 (when flip)
      warp        perspective: corners moved by up to max_warp, x and y each with p_affine
      rotate      up to ±max_rotate degrees, p_affine
      zoom        in by min_zoom..max_zoom around a random centre, p_affine
      brightness  logit(x) + logit(b), b within 0.5 ± max_lighting / 2, p_lighting
      contrast    logit(x) × c, |log c| up to -log(1 - max_lighting), p_lighting
    The geometric ones are one matrix (flip @ rotate @ zoom) and one warp, resampled once
    (bilinear, align_corners=True, reflection padding by default, as fastai; "zeros" suits digits
    on black); lighting works in logit space, as fastai's. The constructor's max_warp is 0 (no
    warp); aug_transforms() and DataConfig give fastai's 0.2.
    """

    def __init__(self, *, flip: bool = True, max_rotate: float = 10.0, max_zoom: float = 1.1,
                 max_lighting: float = 0.2, pad_mode: str = "reflection", p_affine: float = 0.75,
                 p_lighting: float = 0.75, max_warp: float = 0.0, min_zoom: float = 1.0):
        super().__init__()
        if not 0.0 <= max_lighting < 1.0:
            raise ValueError(f"max_lighting must be from 0 to below 1, not {max_lighting}.")
        self.pad_mode = pad_mode
        self.flip, self.max_rotate, self.max_warp = flip, max_rotate, max_warp
        self.min_zoom, self.max_zoom = min_zoom, max(min_zoom, max_zoom)
        self.max_lighting, self.p_affine, self.p_lighting = max_lighting, p_affine, p_lighting

    def make_params(self, flat_inputs: list) -> dict:
        b = flat_inputs[0].shape[0]

        def u(lo: float, hi: float) -> torch.Tensor:
            return torch.empty(b).uniform_(lo, hi)

        def masked(values: torch.Tensor, p: float, neutral: float) -> torch.Tensor:
            # fastai's _draw_mask: each image keeps its drawn value with probability p
            return torch.where(torch.rand(b) < p, values, torch.full_like(values, neutral))

        pa, pl, lit = self.p_affine, self.p_lighting, self.max_lighting
        mirror = masked(torch.full((b,), -1.0), 0.5, 1.0) if self.flip else torch.ones(b)
        warp = torch.stack([masked(u(-self.max_warp, self.max_warp), pa, 0.0),
                            masked(u(-self.max_warp, self.max_warp), pa, 0.0)], 1)   # (B, 2)
        angle = masked(u(-self.max_rotate, self.max_rotate), pa, 0.0) * (math.pi / 180)
        zoom = masked(u(self.min_zoom, self.max_zoom), pa, 1.0)
        centre = torch.rand(b, 2)                        # where the zoom looks, 0..1 across, down
        bright = masked(u(0.5 * (1 - lit), 0.5 * (1 + lit)), pl, 0.5)
        contrast = masked(u(math.log(1 - lit), -math.log(1 - lit)).exp(), pl, 1.0)
        return dict(mirror=mirror, warp=warp, angle=angle, zoom=zoom, centre=centre,
                    bright=bright, contrast=contrast)

    @staticmethod
    def matrix(params: dict, h: int, w: int) -> torch.Tensor:
        """(B, 2, 3): output coordinates in [-1, 1] -> where they sample the input, as fastai's
        flip @ rotate @ zoom, adjusted for non-square images (_prepare_mat)."""
        m, a = params["mirror"], params["angle"]
        s = 1 / params["zoom"]
        zero, one = torch.zeros_like(s), torch.ones_like(s)

        def mat(*v: torch.Tensor) -> torch.Tensor:
            return torch.stack([torch.stack(v[:3], -1), torch.stack(v[3:], -1),
                                torch.stack([zero, zero, one], -1)], 1)        # (B, 3, 3)

        col, row = ((1 - s) * (2 * params["centre"][:, i] - 1) for i in (0, 1))
        flip = mat(m, zero, zero, zero, one, zero)
        rotate = mat(a.cos(), a.sin(), zero, -a.sin(), a.cos(), zero)
        out = flip @ rotate @ mat(s, zero, col, zero, s, row)
        out[:, 0, 1] *= h / w
        out[:, 1, 0] *= w / h
        return out[:, :2]

    def transform(self, inpt, params: dict):
        x = inpt                                                       # (B, 3, H, W) float
        if x.shape[0] == 0:   # affine_grid refuses an empty batch; there is nothing to vary
            return x
        theta = self.matrix(params, x.shape[-2], x.shape[-1]).to(x.dtype)
        grid = functional.affine_grid(theta, list(x.shape), align_corners=True)   # (B, H, W, 2)
        if bool((params["warp"] != 0).any()):
            grid = _perspective(grid, params["warp"].to(x.dtype))
        x = functional.grid_sample(x, grid, mode="bilinear", padding_mode=self.pad_mode,
                                   align_corners=True)
        bright, contrast = params["bright"], params["contrast"]
        if bool((bright != 0.5).any() or (contrast != 1).any()):
            shift = _logit(bright).view(-1, 1, 1, 1).to(x.dtype)
            x = torch.sigmoid((_logit(x) + shift) * contrast.view(-1, 1, 1, 1).to(x.dtype))
        return x.clamp_(0.0, 1.0)


def aug_transforms(*, mult: float = 1.0, do_flip: bool = True, max_rotate: float = 10.0,
                   min_zoom: float = 1.0, max_zoom: float = 1.1, max_lighting: float = 0.2,
                   max_warp: float = 0.2, p_affine: float = 0.75, p_lighting: float = 0.75,
                   pad_mode: str = "reflection") -> BatchAugment:
    """fastai's aug_transforms, with its defaults and argument names (mult scales rotation,
    lighting and warp)."""
    return BatchAugment(flip=do_flip, max_rotate=max_rotate * mult, min_zoom=min_zoom,
                        max_zoom=max_zoom, max_lighting=max_lighting * mult,
                        max_warp=max_warp * mult, p_affine=p_affine, p_lighting=p_lighting,
                        pad_mode=pad_mode)


def batch_augment(cfg: DataConfig) -> BatchAugment:
    """The training augmentation of cfg as a v2 transform on float batches in [0, 1]."""
    return BatchAugment(flip=cfg.flip, max_rotate=cfg.max_rotate, max_zoom=cfg.max_zoom,
                        max_lighting=cfg.max_lighting, pad_mode=cfg.pad_mode,
                        max_warp=cfg.max_warp, p_affine=cfg.p_affine, p_lighting=cfg.p_lighting)


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


__all__ = ["resize_crop", "BatchAugment", "aug_transforms", "batch_augment", "train_transforms", "valid_transforms",
           "denormalize"]
