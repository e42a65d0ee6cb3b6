"""How a folder becomes training batches (DataConfig) and the ImageNet normalisation defaults."""
from __future__ import annotations

from dataclasses import dataclass

from engine.data.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """How a folder becomes training batches. Defaults suit the digits on a CPU."""

    size: int = 64                  # image side in pixels, after resize and crop (square)
    bs: int = 64                    # batch size (images per step), train and valid
    valid_pct: float = 0.2          # share of each class held out when there is no valid/ folder
    seed: int = 42                  # seed of the split and of the train shuffle order
    augment: bool = True            # random flip/rotate/zoom/lighting on training images
    flip: bool = True               # horizontal flips (turn off for digits and text)
    max_rotate: float = 10.0        # largest rotation, degrees either way
    max_zoom: float = 1.1           # largest zoom-in factor (1.0 = none)
    max_lighting: float = 0.2       # largest brightness and contrast change, as a fraction
    pad_mode: str = "reflection"    # what rotation shows past the edges: reflection|zeros|border
    num_workers: int | None = None  # loader worker processes; None = choose per device
    pin_memory: bool | None = None  # page-locked batches; None = only on CUDA
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel mean of [0, 1] pixels
    std: tuple[float, float, float] = IMAGENET_STD    # per-channel std of [0, 1] pixels

    def __post_init__(self) -> None:
        if int(self.size) < 8:
            raise DataError(f"The image size must be at least 8 pixels, not {self.size}.")
        if int(self.bs) < 1:
            raise DataError(f"The batch size must be at least 1, not {self.bs}.")
        if self.pad_mode not in ("reflection", "zeros", "border"):
            raise DataError(f"Unknown pad_mode {self.pad_mode!r}; choose reflection, zeros or border.")
        if not 0.0 <= float(self.valid_pct) < 1.0:
            raise DataError(f"The validation share must be from 0 to below 1, not {self.valid_pct}.")


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DataConfig"]
