"""Summaries of a data set for the Train page, computed without training: images per class and
split (from the file listing alone), a show_batch preview decoding only the files it shows, and the
steps per epoch."""
from __future__ import annotations

import os

import numpy as np

from engine.data.errors import DataError
from engine.settings import RunSettings


def class_counts(folder: str | os.PathLike, valid_pct: float = 0.2, seed: int = 42) -> dict:
    """{"classes", "train" counts, "valid" counts} per class, from the file listing (no decoding)."""
    from engine.data.items import load_items
    items = load_items(folder, valid_pct=valid_pct, seed=seed)
    n = len(items.classes)
    train = np.bincount([y for _, y in items.train], minlength=n).tolist()
    valid = np.bincount([y for _, y in items.valid], minlength=n).tolist()
    return {"classes": list(items.classes), "train": train, "valid": valid,
            "has_valid_folder": items.has_valid_folder}

def preview_batch(s: RunSettings, *, augment: bool, n: int = 16, seed: int = 0) -> np.ndarray:
    """A show_batch-style grid of n training images as the model sees them, decoding only those
    n files (so a large photo set previews at once); uint8 (H, W, 3). DataError (a sentence) when
    none of them decodes (broken files, or images too small or too oddly shaped to use)."""
    import torch

    from engine.data.grids import grid_image
    from engine.data.items import load_items
    from engine.data.loaders import decode_items
    from engine.data.transforms import denormalize, train_transforms, valid_transforms
    cfg = s.data_config()
    items = load_items(s.folder, valid_pct=s.valid_pct, seed=s.seed)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(items.train), size=min(n, len(items.train)), replace=False)
    paths = [items.train[i][0] for i in pick]
    images, ok, bad = decode_items(paths, s.size, workers=2)
    if not ok:   # nothing to show (and an empty batch is nothing to augment): say why instead
        reason = f" The first one: {bad[0][1]}" if bad else ""
        raise DataError(f"None of the {len(paths)} training images picked for the preview could "
                        f"be decoded, so there is nothing to show.{reason} “Check every image” lists "
                        "the files that cannot be used.")
    labels = [items.classes[items.train[pick[i]][1]] for i in ok]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tf = train_transforms(cfg) if augment else valid_transforms(cfg)
        x = tf(images)
    return grid_image(denormalize(x, cfg.mean, cfg.std), labels, ncols=8, tile=72)

def batches_per_epoch(n_train: int, bs: int) -> int:
    """Training steps per epoch as build_dataloaders makes them (drop_last when more than a batch)."""
    return max(1, n_train // bs) if n_train > bs else 1

__all__ = ["class_counts", "preview_batch", "batches_per_epoch"]
