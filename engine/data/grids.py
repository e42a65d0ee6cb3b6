"""Showing images as one captioned grid: any uint8 batch (grid_image) or a batch as the model
sees it (show_batch)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from engine.data.errors import DataError
from engine.data.loaders import DataLoaders
from engine.data.transforms import denormalize


def grid_image(images: np.ndarray, labels: Sequence[str], *, ncols: int | None = None,
               tile: int = 112, pad: int = 4) -> np.ndarray:
    """uint8 (B, H, W, 3) images with a caption under each -> one uint8 (H', W', 3) grid image.

    Any batch of images gives a grid: none gives one blank tile, 1×1 images are enlarged like the
    rest, (B, H, W) grey batches are shown grey. Anything else is a DataError sentence."""
    from PIL import Image, ImageDraw, ImageFont

    if int(tile) < 1 or int(pad) < 0:
        raise DataError(f"A grid needs tiles of at least 1 pixel, not {tile}.")
    images = np.asarray(images)
    b = len(images)
    if b == 0:
        return np.full((tile, tile, 3), 255, np.uint8)
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=3)                 # (B, H, W) grey
    if images.ndim != 4 or images.shape[3] != 3 or min(images.shape[1:3]) < 1 \
            or images.dtype != np.uint8:
        raise DataError(f"A grid shows uint8 images of shape (B, H, W, 3), not {images.dtype} "
                        f"{tuple(images.shape)}.")
    ncols = max(1, int(ncols or np.ceil(np.sqrt(b))))
    nrows = int(np.ceil(b / ncols))
    caption = 16
    cell_w, cell_h = tile + pad, tile + caption + pad
    canvas = Image.new("RGB", (ncols * cell_w + pad, nrows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k in range(b):
        r, c = divmod(k, ncols)
        img = Image.fromarray(np.ascontiguousarray(images[k]))
        # Small images (the 8×8 digits) are enlarged without blurring their pixels.
        resample = Image.NEAREST if max(img.size) < tile else Image.BILINEAR
        img = img.resize((tile, tile), resample)
        x, y = pad + c * cell_w, pad + r * cell_h
        canvas.paste(img, (x, y))
        text = str(labels[k]) if k < len(labels) else ""
        while text and draw.textlength(text, font=font) > tile:
            text = text[:-1]
        draw.text((x, y + tile + 2), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def show_batch(dls: DataLoaders, *, split: str = "train", n: int = 16, ncols: int | None = None,
               seed: int = 0, tile: int = 112) -> np.ndarray:
    """A grid of `n` images as the model sees them (augmented for "train"), un-normalised and
    captioned with their class, as a uint8 (H, W, 3) array. The loaders' random state is left
    untouched, so showing a batch does not change training.
    """
    if split not in ("train", "valid"):
        raise DataError(f"Unknown split {split!r}; choose 'train' or 'valid'.")
    loader = dls.train if split == "train" else dls.valid
    ds = loader.dataset
    n = min(n, len(ds))
    if n == 0:
        return grid_image(np.zeros((0, tile, tile, 3), np.uint8), [], tile=tile)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        idx = torch.randperm(len(ds))[:n].tolist() if split == "train" else list(range(n))
        x, y = loader.collate_fn([ds[i] for i in idx])                   # (B, 3, S, S), (B,)
    labels = [dls.classes[int(t)] for t in y]
    return grid_image(denormalize(x, dls.mean, dls.std), labels, ncols=ncols, tile=tile)


__all__ = ["grid_image", "show_batch"]
