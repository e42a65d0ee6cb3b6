"""The one description of a training run: `RunSettings`, with the seed in it.

The command line, the Train page, the background jobs, the saved run (settings.json) and the Train
page's URL table all read and write this one dataclass; the URL table's rows (type, bounds, choices)
are derived from `FIELD_RULES` here, so a default or a range is written once.

Per-data-source presets (`PRESETS`): the built-in digits are 8×8 pixels, so a small CNN trained from
scratch at 16 px is quick and accurate on a CPU; photos get a pretrained EfficientNet-Lite0 (its
weights ship with the app) at 224 px, fine-tuned as in the lesson.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, Sequence

from engine.errors import TrainingError

#: Training methods, as the lesson names them.
METHODS = ("fit_one_cycle", "fine_tune", "unfreeze")
#: Architectures engine.models builds, with a line a page can show next to the choice. Here rather
#: than in engine.models so that reading settings never imports torch.
ARCHS: dict[str, str] = {
    "resnet18": "ResNet-18 (11 M parameters), ImageNet weights downloaded by torchvision",
    "resnet34": "ResNet-34 (21 M parameters), ImageNet weights downloaded by torchvision",
    "resnet50": "ResNet-50 (25 M parameters), ImageNet weights downloaded by torchvision",
    "efficientnet_lite0": "EfficientNet-Lite0 (4.7 M parameters), ImageNet weights that work offline",
    "simple_cnn": "a small 4-block CNN trained from scratch, quick on a CPU for tiny images",
}
ARCH_NAMES = tuple(ARCHS)
#: Architectures whose ImageNet weights the app can load.
PRETRAINED_ARCHS = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0")
PRETRAINED_ARCH_NAMES = PRETRAINED_ARCHS
#: Image sides and batch sizes the Train page offers; a link may name only these (FIELD_RULES),
#: so a value the widgets cannot show is announced instead of silently becoming the first choice.
#: (The command line is not limited to these.)
SIZES = (16, 28, 32, 64, 96, 128, 160, 192, 224)
BATCH_SIZES = (8, 16, 32, 64, 128, 256)
#: Data sources a link may name; uploads and folders belong to one session and cannot be shared.
SHAREABLE_SOURCES = ("digits", "pets")
#: Arithmetic a run computes in: "auto" is bf16 autocast on a GPU that has it (fp16 with loss
#: scaling on one that does not) and fp32 elsewhere; the others force it (fastai trains in fp32
#: unless to_fp16() is called).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class RunSettings:
    """Everything one LR-finder or training run needs."""

    # data
    folder: str = ""                   # the data set: a folder of class folders (or train/ + valid/)
    data_name: str = "digits"          # the data set's name, shown in the runs list
    flip: bool = False                 # horizontal flips in augmentation (off for digits: a mirrored 2 is no digit)
    valid_pct: float = 0.2             # validation share when the folder has no valid/ folder
    seed: int = 42                     # seeds the split, the shuffle order and the initial weights
    augment: bool = True               # random rotation, zoom and lighting on training images
    # model
    arch: str = "simple_cnn"           # one of ARCH_NAMES
    pretrained: bool = False           # start the body from ImageNet weights
    size: int = 16                     # image side in pixels, training and validation
    bs: int = 64                       # images per mini-batch
    # training
    precompute: bool = False           # frozen-body epochs (and the LR finder) on cached body features
    train_bn: bool = True              # a frozen body's batch-norm layers still train, as fastai's
                                       # (weights and running statistics); precompute turns it off
    precision: str = "auto"            # auto | fp32 | bf16 | fp16 (see PRECISIONS)
    method: str = "fit_one_cycle"      # fit_one_cycle | fine_tune | unfreeze (slice(lr_lo, lr))
    epochs: int = 10                   # passes over the training set (after the frozen ones for fine_tune)
    freeze_epochs: int = 1             # fine_tune's head-only epochs
    lr: float = 1e-2                   # peak learning rate (the head's, for fine_tune and slices)
    lr_lo: float = 1e-5                # earliest layers' peak rate after unfreezing: slice(lr_lo, lr)
    wd: float = 0.01                   # decoupled weight decay per step, as a fraction of lr × weight
                                       # (fastai's default 0.01; 0 turns it off)
    ps: float = 0.5                    # dropout in the head, fastai's ps: p/2 before its first linear
                                       # layer, p before the last (0 turns it off)
    start_from: str | None = None      # run id whose weights to continue from (unfreeze)
    device: str | None = None          # "cuda", "mps" or "cpu"; None picks the fastest present
    num_it: int = 100                  # LR-finder mini-batches

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrainingError(f"Unknown training method {self.method!r}; choose one of "
                                f"{', '.join(METHODS)}.")
        if self.precision not in PRECISIONS:
            raise TrainingError(f"Unknown precision {self.precision!r}; choose one of "
                                f"{', '.join(PRECISIONS)}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what settings.json holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunSettings":
        """Settings from a dict such as a saved run's settings.json; unknown keys are ignored and
        missing ones take their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def with_(self, **changes: Any) -> "RunSettings":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def data_config(self) -> Any:
        """The data-loading part (engine.data.DataConfig), imported only when asked for."""
        from engine.data.config import DataConfig, input_stats
        # Normalised as the weights expect; not at all from scratch (fastai normalises only
        # pretrained models).
        mean, std = input_stats(self.arch, self.uses_pretrained)
        return DataConfig(size=self.size, bs=self.bs, valid_pct=self.valid_pct, seed=self.seed,
                          augment=self.augment, flip=self.flip, mean=mean, std=std)

    @property
    def uses_pretrained(self) -> bool:
        """Pretrained weights are asked for and the architecture has them."""
        return bool(self.pretrained) and self.arch in PRETRAINED_ARCH_NAMES


@dataclass(frozen=True)
class FieldRule:
    """What values a field may take when it comes from outside (a link, the command line)."""

    kind: str                                  # "int" | "float" | "bool" | "str"
    lo: float | None = None
    hi: float | None = None
    choices: Sequence[Any] | None = None

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError with a short reason when value does not fit."""
        if self.kind == "float" and not math.isfinite(float(value)):
            raise ValueError("not a finite number")
        if self.choices is not None and value not in self.choices:
            raise ValueError("not one of the choices")
        if self.lo is not None and value < self.lo or self.hi is not None and value > self.hi:
            raise ValueError(f"outside {self.lo}…{self.hi}")


#: Ranges and choices of the fields a user sets (widgets and the URL table use these).
FIELD_RULES: dict[str, FieldRule] = {
    "arch": FieldRule("str", choices=ARCH_NAMES),
    "pretrained": FieldRule("bool"),
    "size": FieldRule("int", lo=8, hi=512, choices=SIZES),
    "bs": FieldRule("int", lo=1, hi=1024, choices=BATCH_SIZES),
    "valid_pct": FieldRule("float", lo=0.05, hi=0.9),   # 0.9: the overfitting experiment's tiny training share
    "seed": FieldRule("int", lo=0, hi=2**31 - 1),
    "augment": FieldRule("bool"),
    "method": FieldRule("str", choices=METHODS),
    "epochs": FieldRule("int", lo=1, hi=100),
    "freeze_epochs": FieldRule("int", lo=0, hi=10),
    "lr": FieldRule("float", lo=1e-7, hi=10.0),
    "lr_lo": FieldRule("float", lo=1e-8, hi=1.0),
    "wd": FieldRule("float", lo=0.0, hi=1.0),
    "ps": FieldRule("float", lo=0.0, hi=0.9),           # a dropout of 1 would drop every feature
    "precompute": FieldRule("bool"),
    "train_bn": FieldRule("bool"),
    "precision": FieldRule("str", choices=PRECISIONS),
}

#: Per-data-source presets: the fields a source changes from the dataclass defaults.
DIGITS_PRESET: dict[str, Any] = {"arch": "simple_cnn", "pretrained": False, "size": 16, "bs": 64,
                                 "epochs": 10, "lr": 1e-2, "method": "fit_one_cycle", "flip": False}
PHOTOS_PRESET: dict[str, Any] = {"arch": "efficientnet_lite0", "pretrained": True, "size": 224,
                                 "bs": 64, "epochs": 2, "lr": 2e-3, "method": "fine_tune",
                                 "flip": True}
PRESETS: dict[str, dict[str, Any]] = {"digits": DIGITS_PRESET, "photos": PHOTOS_PRESET}


def preset_for(source: str) -> dict[str, Any]:
    """The preset of a data source: digits for "digits", photos for everything else."""
    return dict(DIGITS_PRESET if source == "digits" else PHOTOS_PRESET)


def settings_for(source: str, **overrides: Any) -> RunSettings:
    """RunSettings with a source's preset, then the given fields."""
    return RunSettings(**{**preset_for(source), **overrides})


def precompute_reason(s: RunSettings) -> str | None:
    """Why precompute cannot apply to these settings, as a sentence; None when it can.

    A cheap rule on the settings alone (no model is built): precompute needs a pretrained body that
    stays frozen for at least one stage, and training images that are not augmented.
    """
    if s.method == "unfreeze":
        return ("Unfreezing trains every layer, so the body's features change at every step: "
                "precompute only helps while the body is frozen.")
    if s.arch not in PRETRAINED_ARCH_NAMES:
        return (f"{s.arch} has no pretrained body: every layer learns from random weights, so "
                "there are no fixed body features to compute once.")
    if not s.pretrained:
        return ("Without pretrained weights every layer trains, so there are no fixed body "
                "features to compute once. Tick “pretrained” to use precompute.")
    if s.augment:
        return ("Precompute needs augmentation off: with it the body sees a different version of "
                "each image every epoch. Turn augmentation off in section 1 to use it.")
    if s.method == "fine_tune" and s.freeze_epochs < 1:
        return ("fine_tune with 0 frozen epochs never freezes the body, so there is nothing to "
                "precompute: give it at least one frozen epoch.")
    return None


def precompute_note(s: RunSettings) -> str | None:
    """What precompute changes besides speed, as a sentence; None when nothing.

    Cached features need a body that is exactly the same in every epoch, so precompute keeps the
    frozen body's batch-norm layers fixed (train_bn off). The long way with train_bn on (fastai's
    default) moves their statistics and weights with the data, so the two runs differ slightly.
    """
    if s.precompute and s.train_bn and precompute_reason(s) is None:
        return ("Precompute keeps the frozen body's batch-norm statistics and weights fixed (as "
                "train_bn off): the long way would adapt them to this data, as fastai does.")
    return None


__all__ = ["RunSettings", "ARCHS", "PRETRAINED_ARCHS", "FieldRule", "FIELD_RULES", "METHODS", "ARCH_NAMES",
           "PRETRAINED_ARCH_NAMES", "SIZES", "BATCH_SIZES", "SHAREABLE_SOURCES", "DIGITS_PRESET",
           "PHOTOS_PRESET", "PRESETS", "preset_for", "settings_for", "precompute_reason",
           "precompute_note", "PRECISIONS"]
