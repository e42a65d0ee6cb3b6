"""The Explorer's demo run: a deliberately small model trained in seconds on the CPU, so a newcomer
has something to explore before training one on the Train page.

The run trains on its own copy of a few digits per class, in a folder named after the session
(engine.runs.demo_prefix), so cleaning it never touches the digits every user of the server shares.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from engine.runs import DEMO_DIR, RunInfo, demo_prefix

DEMO_ARCH = "simple_cnn"    # the small CNN: no download, trains on a CPU in seconds
DEMO_SIZE = 16              # image side in pixels (the digits are 8×8)
DEMO_BS = 32                # batch size
DEMO_LR = 1e-2              # peak learning rate of the one-cycle schedule
DEMO_SEED = 42              # seed of the validation split (the weights use seed 0)
DEMO_VALID_PCT = 0.2        # share of the copy held out for validation


def copy_demo_digits(owner: str, per_class: int) -> Path:
    """A fresh folder <data dir>/explore-demo/<demo_prefix(owner)><time> holding the first
    `per_class` digits of every class, copied from the shared digits folder."""
    from engine.data import digits_folder
    from engine.paths import data_dir

    source = digits_folder()
    dest = data_dir() / DEMO_DIR / f"{demo_prefix(owner)}{int(time.time())}"
    for cls in sorted(p for p in source.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy2(f, dest / cls.name / f.name)
    return dest


def make_demo_run(owner: str, per_class: int = 30, epochs: int = 3) -> RunInfo:
    """Train a small CNN on `per_class` digits of each class for `epochs` epochs and save it as a
    finished run of `owner`; returns its RunInfo. Runs on the CPU, whatever the server has."""
    import torch

    from engine.data import DataConfig, build_dataloaders
    from engine.models import create_model
    from engine.runs import save_run
    from engine.training import Learner

    dest = copy_demo_digits(owner, per_class)
    torch.manual_seed(0)
    dls = build_dataloaders(dest, DataConfig(size=DEMO_SIZE, bs=DEMO_BS, valid_pct=DEMO_VALID_PCT,
                                                 flip=False, seed=DEMO_SEED))
    learn = Learner(create_model(DEMO_ARCH, len(dls.classes), pretrained=False), dls,
                    device="cpu", seed=0)
    learn.fit_one_cycle(epochs, DEMO_LR)
    settings = {"source": "folder", "folder": str(dest), "arch": DEMO_ARCH, "pretrained": False,
                "size": DEMO_SIZE, "bs": DEMO_BS, "valid_pct": DEMO_VALID_PCT, "seed": DEMO_SEED,
                "method": "fit_one_cycle", "epochs": epochs, "lr": DEMO_LR}
    return save_run(learn, owner=owner, data_name="digits demo", settings=settings,
                    history={"epochs": learn.history}, status="done")


__all__ = ["make_demo_run", "copy_demo_digits"]
