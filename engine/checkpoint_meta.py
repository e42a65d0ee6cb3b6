"""What a checkpoint's description (its JSON header) may claim, checked before anything is built.

A checkpoint may come from anyone (the export zip tells people to load one with
engine.models.load_checkpoint), and its header drives allocation: the image size sets how large
each prediction's tensors are (a claimed 60,000 pixels made one prediction try 43 GB), the class
list how large a head is built, and mean and std what every pixel is divided by. So each is held
to what the app itself writes before engine.models uses it.
"""
from __future__ import annotations

import math
from typing import Any

from engine.data.config import MAX_SIZE, MIN_SIZE

#: mean and std of [0, 1] pixels: the app writes 0, 0.5 or ImageNet's means and 1, 0.5 or
#: ImageNet's standard deviations (engine.data.config.input_stats).
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (0.001, 1.0)
MAX_CLASSES = 10_000        # a 512-wide head then has 5 million weights in its last layer
MAX_CLASS_NAME = 255        # characters; class names are folder names


def _three_numbers(value: Any, lo: float, hi: float) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        and lo <= v <= hi for v in value)


def meta_problem(meta: dict[str, Any]) -> str | None:
    """What in a checkpoint's description is out of range (a few words for a sentence), or None.

    size: a whole number of MIN_SIZE..MAX_SIZE pixels; mean and std: three finite numbers each in
    MEAN_RANGE and STD_RANGE (so std > 0); classes: 1..MAX_CLASSES non-empty names, as many as
    `n_classes` when that is given."""
    size, classes = meta.get("size"), meta.get("classes")
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        return (f"its image size {str(size)[:20]!r} is not a whole number of {MIN_SIZE}…{MAX_SIZE} "
                "pixels")
    if not _three_numbers(meta.get("mean"), *MEAN_RANGE):
        return (f"its normalisation mean is not three numbers from {MEAN_RANGE[0]:g} to "
                f"{MEAN_RANGE[1]:g}")
    if not _three_numbers(meta.get("std"), *STD_RANGE):
        return (f"its normalisation std is not three numbers from {STD_RANGE[0]:g} to "
                f"{STD_RANGE[1]:g}")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES \
            or not all(isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME for c in classes):
        return (f"its class list is not 1 to {MAX_CLASSES:,} names of 1 to {MAX_CLASS_NAME} "
                "characters")
    n = meta.get("n_classes", len(classes))
    if isinstance(n, bool) or not isinstance(n, int) or n != len(classes):
        return (f"it names {len(classes)} classes but says the model has {str(n)[:20]} outputs "
                "(the weights do not fit its class list)")
    return None


__all__ = ["MEAN_RANGE", "STD_RANGE", "MAX_CLASSES", "MAX_CLASS_NAME", "meta_problem"]
