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
from engine.settings import RunSettings

#: The demo's settings: the small CNN (no download, seconds on a CPU) on 16 px digits.
DEMO_SETTINGS = RunSettings(data_name="digits demo", arch="simple_cnn", pretrained=False, size=16,
                            bs=32, lr=1e-2, seed=42, valid_pct=0.2, flip=False,
                            method="fit_one_cycle", device="cpu")
DEMO_WEIGHT_SEED = 0        # the initial weights' seed (the split uses DEMO_SETTINGS.seed)


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
    from engine.data import build_dataloaders
    from engine.device import seed_everything
    from engine.models import create_model
    from engine.runs import save_run
    from engine.training import Learner

    s = DEMO_SETTINGS.with_(folder=str(copy_demo_digits(owner, per_class)), epochs=epochs)
    seed_everything(DEMO_WEIGHT_SEED)
    dls = build_dataloaders(s.folder, s.data_config())
    learn = Learner(create_model(s.arch, len(dls.classes), pretrained=False), dls,
                    device=s.device, seed=DEMO_WEIGHT_SEED)
    learn.fit_settings(s)
    return save_run(learn, owner=owner, data_name=s.data_name, settings=s.to_dict(),
                    history={"epochs": learn.history}, status="done")


__all__ = ["DEMO_SETTINGS", "make_demo_run", "copy_demo_digits"]
