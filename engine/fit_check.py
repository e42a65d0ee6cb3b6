"""How well a trained model fits its own training images, measured as the validation set is.

The training loss in the epoch table is taken while the model trains: on augmented images, with
dropout switched on, and smoothed over the epoch's batches. So with augmentation or dropout it sits
above the validation loss even for a model that has learned its training images perfectly, and
"train loss > valid loss" cannot tell under-training apart. `fit_check` measures the training
images the way the validation images are measured (no augmentation, dropout off, eval mode) once,
after training: what the coach (engine.coach) compares with the validation figures.
"""
from __future__ import annotations

import math
from typing import Any

#: Training images measured at most: enough for an error rate to within a couple of percent,
#: and a fraction of an epoch's validation pass on a large data set.
MAX_ITEMS = 512


def fit_check(learn: Any, max_items: int = MAX_ITEMS) -> dict[str, float] | None:
    """{"train_loss", "train_error", "n"} of learn's model on up to max_items of its training
    images (evenly spread over the set), without augmentation or dropout; None when the loaders
    are not the app's own (they hold no decoded training images to reuse)."""
    from torch.utils.data import DataLoader, Subset

    from engine.data.loaders import BatchCollate
    from engine.data.transforms import valid_transforms

    dls = learn.dls
    dataset = getattr(getattr(dls, "train", None), "dataset", None)
    cfg = getattr(dls, "cfg", None)
    if dataset is None or cfg is None or len(dataset) == 0:
        return None
    step = max(1, math.ceil(len(dataset) / max_items))
    indices = list(range(0, len(dataset), step))[:max_items]
    loader = DataLoader(Subset(dataset, indices), batch_size=cfg.bs, shuffle=False,
                        collate_fn=BatchCollate(valid_transforms(cfg)))
    was_training = learn.model.training
    try:
        measured = learn.validate(loader)
    finally:
        learn.model.train(was_training)
    return {"train_loss": float(measured["valid_loss"]), "train_error": float(measured["error_rate"]),
            "n": len(indices)}


__all__ = ["MAX_ITEMS", "fit_check"]
