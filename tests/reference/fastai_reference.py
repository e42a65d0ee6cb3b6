"""fastai's own numbers for the tests that compare the engine with the lesson's library.

    PYTHONPATH=bench/.fastai-pkgs .venv/bin/python tests/reference/fastai_reference.py > tests/reference/fastai_numbers.json

(`make bench-deps` installs fastai into bench/.fastai-pkgs.) Prints JSON:
- "rules": valley, slide, minimum and steep on a fixed float32 curve, as fastai's lr_find calls them;
- "plans": the learning rate of every parameter group and Adam's beta1 at every step of real fastai
  Learners (three parameter groups, 5 batches per epoch) running fit_one_cycle, fine_tune and
  fit_one_cycle with slice(lo, hi), read from the optimiser after fastai's scheduler set them;
- "even_mults": fastai's geometric spread of a slice over three groups.
tests/engine/test_fastai_reference.py runs this script when fastai is importable and otherwise reads
the stored output, tests/reference/fastai_numbers.json.
"""
from __future__ import annotations

import json
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")

N_BATCHES = 5                      # training batches per epoch in every recorded plan
PLANS = {                          # name: (method, arguments)
    "fit_one_cycle": ("fit_one_cycle", {"n_epoch": 3, "lr_max": 1e-2}),
    "fine_tune": ("fine_tune", {"epochs": 2, "base_lr": 2e-3, "freeze_epochs": 1}),
    "unfreeze": ("fit_one_cycle", {"n_epoch": 2, "lr_max": [1e-5, 1e-3]}),   # slice(lo, hi)
}


def curve() -> tuple[np.ndarray, np.ndarray]:
    """The float32 LR-finder curve the rules are compared on (already trimmed, 85 points)."""
    x = np.linspace(0, 1, 85)
    lrs = (1e-6 * 1e6 ** x).astype(np.float32)
    losses = (2.3 - 1.6 / (1 + np.exp(-(x - 0.45) * 12)) + 0.05 * np.sin(37 * x)
              + np.exp((x - 0.95) * 25)).astype(np.float32)
    return lrs, losses


def rules() -> dict[str, float]:
    import torch
    from fastai.callback.schedule import minimum, slide, steep, valley

    lrs, losses = (torch.tensor(a) for a in curve())
    return {f.__name__: float(f(lrs, losses, 100)[0]) for f in (valley, slide, minimum, steep)}


def plans() -> dict[str, dict[str, list]]:
    import torch
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from torch import nn

    class Record(Callback):
        order = 70                 # after fastai's ParamScheduler (60) has set this step's values

        def before_fit(self) -> None:
            self.lrs, self.moms = [], []

        def before_batch(self) -> None:
            if self.training:
                self.lrs.append([h["lr"] for h in self.opt.hypers])
                self.moms.append(self.opt.hypers[-1]["mom"])

    torch.manual_seed(0)
    items = [(torch.randn(4), torch.tensor(i % 2)) for i in range(4 * N_BATCHES + 8)]
    out = {}
    for name, (method, kwargs) in PLANS.items():
        dls = DataLoaders.from_dsets(items[:4 * N_BATCHES], items[4 * N_BATCHES:], bs=4,
                                     device="cpu")
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(),
                        splitter=lambda m: [list(layer.parameters()) for layer in m])
        lrs, moms = [], []
        rec = Record()
        learn.add_cb(rec)
        if "lr_max" in kwargs and isinstance(kwargs["lr_max"], list):
            kwargs = {**kwargs, "lr_max": slice(*kwargs["lr_max"])}

        def after_fit(rec=rec) -> None:   # fine_tune fits twice: keep both stages
            lrs.extend(rec.lrs)
            moms.extend(rec.moms)
        rec.after_fit = after_fit
        with learn.no_logging(), learn.no_bar():
            getattr(learn, method)(**kwargs)
        out[name] = {"lrs": lrs, "moms": moms}
    return out


def main() -> int:
    from fastai import __version__
    from fastai.torch_core import even_mults

    json.dump({"fastai": __version__, "n_batches": N_BATCHES, "rules": rules(), "plans": plans(),
               "even_mults": [float(v) for v in even_mults(1e-5, 1e-3, 3)]}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
