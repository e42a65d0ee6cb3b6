"""fastai's own numbers for tests/engine/test_fastai_parity.py: fastai 2.8 training the engine's very
model on the engine's very loaders, and fastai's aug_transforms on a fixed batch with fixed draws.

    PYTHONPATH=bench/.fastai-pkgs:. .venv/bin/python tests/reference/fastai_parity.py > tests/reference/fastai_parity.json

(`make bench-deps` installs fastai into bench/.fastai-pkgs.) Prints JSON:
- "fine_tune": for each seed in SEEDS, a fastai Learner (fastai's Adam, its default hyper-parameters,
  train_bn=True, the 2-group body | head split fastai's default_split gives a timm model) running
  fine_tune(EPOCHS) on EfficientNet-Lite0 with the offline ImageNet weights and a new head, built by
  engine.models.create_model after torch.manual_seed(seed), over engine.data's loaders of the
  scikit-learn digits at SIZE px (split and order as the engine's; normalisation: data_config):
  every step's learning rate per parameter group, and every epoch's train_loss, valid_loss and
  error_rate;
- "augment": fastai's Flip, Warp, Rotate, Zoom, Brightness and Contrast, composed as aug_transforms
  composes them (setup_aug_tfms), applied with the draws in augment_case() to its batch.
Both sides build the same model and loaders with the same seed, so the engine's run differs from
fastai's only in the training code under test.
"""
from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

warnings.simplefilter("ignore")

SEEDS = (0, 42)
SIZE = 32                          # digits upscaled from 8 px
BS = 64
EPOCHS = 1                         # fine_tune(EPOCHS): one frozen epoch, then EPOCHS unfrozen
BASE_LR = 2e-3                     # fine_tune's default
ARCH = "efficientnet_lite0"


def data_config(seed: int):
    """The loaders both sides train on: no augmentation, so every batch is the same on both.

    Normalised with ImageNet's statistics, as fastai's vision_learner normalises a timm
    EfficientNet-Lite0. (The app gives these offline weights [-1, 1], what they were trained with:
    engine/data/config.py.) On these grey 32-px digits ImageNet's statistics let three epochs reach
    about 0.41 error instead of about 0.75, so the two trainings are compared where the model learns.
    """
    import dataclasses

    from engine.data.config import IMAGENET_MEAN, IMAGENET_STD
    from engine.settings import RunSettings

    s = RunSettings(arch=ARCH, pretrained=True, size=SIZE, bs=BS, seed=seed, augment=False,
                    flip=False)
    return dataclasses.replace(s.data_config(), mean=IMAGENET_MEAN, std=IMAGENET_STD)


def build(seed: int, folder: Path):
    """(model, dls) for seed: the engine's loaders and its EfficientNet-Lite0 with a new head."""
    import torch
    from engine.data import build_dataloaders
    from engine.models import create_model

    dls = build_dataloaders(folder, data_config(seed), device="cpu")
    torch.manual_seed(seed)
    model = create_model(ARCH, len(dls.classes), pretrained=True)
    torch.manual_seed(seed)          # the head's dropout draws from here on
    return model, dls


def augment_case() -> tuple[list, dict[str, list[float]]]:
    """A non-square batch of two smooth images (2, 3, 12, 10) in (0, 1), and one draw per image
    for every transform (image 0: all of them; image 1: no flip and no zoom)."""
    import numpy as np

    yy, xx = np.mgrid[0:12, 0:10] / 10.0
    img0 = np.stack([0.5 + 0.4 * np.sin(3 * xx + yy), 0.5 + 0.4 * np.cos(2 * yy), 0.2 + 0.54 * xx])
    img1 = np.stack([0.3 + 0.3 * xx, 0.6 - 0.4 * np.sin(yy * 2), 0.5 + 0.3 * np.cos(xx * yy * 3)])
    x = np.clip(np.stack([img0, img1]), 0.01, 0.99).round(4)
    draws = {"flip": [1.0, 0.0], "warp_x": [0.15, -0.1], "warp_y": [-0.05, 0.18],
             "rotate": [8.0, -6.0], "zoom": [1.08, 1.0], "zoom_x": [0.2, 0.5], "zoom_y": [0.9, 0.5],
             "bright": [0.58, 0.43], "contrast": [1.2, 0.85]}
    return x.tolist(), draws


def fastai_augment() -> dict:
    import torch
    from fastai.vision.augment import (Brightness, Contrast, Flip, Rotate, Warp, Zoom,
                                       setup_aug_tfms)
    from fastai.torch_core import TensorImage

    x, d = augment_case()
    tfms = setup_aug_tfms([
        Flip(p=1.0, draw=d["flip"]),
        Warp(magnitude=0.2, p=1.0, draw_x=d["warp_x"], draw_y=d["warp_y"]),
        Rotate(max_deg=10, p=1.0, draw=d["rotate"]),
        Zoom(max_zoom=1.1, p=1.0, draw=d["zoom"], draw_x=d["zoom_x"], draw_y=d["zoom_y"]),
        Brightness(max_lighting=0.2, p=1.0, draw=d["bright"]),
        Contrast(max_lighting=0.2, p=1.0, draw=d["contrast"])])
    out = TensorImage(torch.tensor(x, dtype=torch.float32))
    for t in tfms:
        out = t(out, split_idx=0)
    return {"input": x, "draws": d, "output": torch.as_tensor(out).tolist()}


def fastai_fine_tune(seed: int, folder: Path) -> dict:
    import torch
    import fastai.callback.progress  # noqa: F401  (adds Learner.no_bar)
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fine_tune)
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.metrics import error_rate

    class Record(Callback):
        order = 70                 # after fastai's ParamScheduler (60) has set this step's values

        def before_fit(self) -> None:
            self.lrs = []

        def before_batch(self) -> None:
            if self.training:
                self.lrs.append([h["lr"] for h in self.opt.hypers])

    model, edls = build(seed, folder)
    dls = DataLoaders(edls.train, edls.valid)
    # fastai's default_split for a timm body: the body, then the head.
    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), metrics=error_rate,
                    splitter=lambda m: [list(m.body.parameters()), list(m.head.parameters())])
    rec, lrs, epochs = Record(), [], []
    learn.add_cb(rec)

    def after_fit(rec=rec) -> None:          # fine_tune fits twice: keep both stages
        lrs.extend(rec.lrs)
        epochs.extend([dict(zip(["train_loss", "valid_loss", "error_rate"], map(float, v)))
                       for v in learn.recorder.values])
    rec.after_fit = after_fit
    with learn.no_logging(), learn.no_bar():
        learn.fine_tune(EPOCHS, base_lr=BASE_LR)
    return {"seed": seed, "n_batches": len(edls.train), "lrs": lrs, "epochs": epochs}


def main() -> int:
    from fastai import __version__
    from engine.data import digits_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = digits_folder(Path(tmp) / "digits")
        runs = [fastai_fine_tune(seed, folder) for seed in SEEDS]
    json.dump({"fastai": __version__, "arch": ARCH, "size": SIZE, "bs": BS, "epochs": EPOCHS,
               "base_lr": BASE_LR, "fine_tune": runs, "augment": fastai_augment()}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
