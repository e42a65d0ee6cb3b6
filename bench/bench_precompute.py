"""Precompute (the lesson's precompute=True) against the same frozen training the long way.

Pretrained EfficientNet-Lite0 (offline weights) at 96 px on the digits, body frozen, augmentation
off, batch size 64. Each repeat builds two Learners from the same initial model and fresh, identical
loaders, and runs the long way and the precomputed way interleaved; medians are reported.

Run: .venv/bin/python -m bench.bench_precompute   (add --quick for one repeat)
"""
from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_rows, row

EPOCHS, LR, NUM_IT, SIZE = 3, 1e-2, 50, 96


def _pair(folder: Path):
    import torch

    from engine.data import DataConfig, build_dataloaders
    from engine.models import create_model
    from engine.training import Learner

    cfg = DataConfig(size=SIZE, bs=64, augment=False, flip=False)
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 10, pretrained=True)
    out = []
    for m in (model, copy.deepcopy(model)):
        learn = Learner(m, build_dataloaders(folder, cfg), device="cpu")
        learn.freeze(train_bn=False)   # the model precompute trains: batch norm fixed
        out.append(learn)
    return out


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, res


def run(repeat: int = 3) -> list[dict]:
    import torch

    from engine.data import digits_folder

    t: dict[str, list[float]] = {k: [] for k in ("fit_long", "fit_pre", "feat", "head_only",
                                                 "find_long", "find_pre")}
    acc_long, acc_pre, n_train = [], [], 0
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = digits_folder(Path(tmp) / "digits")
        for _ in range(repeat):
            # 1. Frozen fit_one_cycle: the long way vs precompute (features computed inside).
            long, pre = _pair(folder)
            n_train = len(long.dls.train_items)
            torch.manual_seed(1)
            s, rows = _timed(lambda: long.fit_one_cycle(EPOCHS, LR))
            t["fit_long"].append(s)
            acc_long.append(rows[-1]["accuracy"])
            torch.manual_seed(1)
            s, rows = _timed(lambda: pre.fit_one_cycle(EPOCHS, LR, precompute=True))
            t["fit_pre"].append(s)
            acc_pre.append(rows[-1]["accuracy"])
            t["feat"].append(pre._features.seconds)
            # 2. The same epochs again once the features are cached (the head alone).
            s, _ = _timed(lambda: pre.fit_one_cycle(EPOCHS, LR, precompute=True))
            t["head_only"].append(s)
            # 3. The LR finder (num_it steps), long way vs cached features.
            s, _ = _timed(lambda: long.lr_find(num_it=NUM_IT, stop_div=False))
            t["find_long"].append(s)
            s, _ = _timed(lambda: pre.lr_find(num_it=NUM_IT, stop_div=False, precompute=True))
            t["find_pre"].append(s)
    m = {k: statistics.median(v) for k, v in t.items()}
    what = f"efficientnet_lite0 pretrained, frozen, {SIZE} px, digits ({n_train} train), bs 64, no aug"
    d_acc = 100 * (statistics.median(acc_pre) - statistics.median(acc_long))
    load1 = os.getloadavg()
    flow = m["feat"] + m["find_pre"] + m["head_only"]
    return [
        row(f"{EPOCHS} frozen epochs the long way ({what})", m["fit_long"], "s",
            note=f"baseline; accuracy {100 * statistics.median(acc_long):.2f} %"),
        row(f"{EPOCHS} frozen epochs with precompute, features included", m["fit_pre"], "s",
            baseline="long way ÷ this", ratio=m["fit_long"] / m["fit_pre"],
            note=f"features (train + valid, once) {m['feat']:.2f} s; accuracy "
                 f"{100 * statistics.median(acc_pre):.2f} % ({d_acc:+.2f} pt); bounded by "
                 f"~{EPOCHS}× because the long way runs the body once per epoch"),
        row(f"{EPOCHS} head epochs on cached features (precomputed head training)", m["head_only"], "s",
            baseline="long way ÷ this", ratio=m["fit_long"] / m["head_only"], target="≥ 10×",
            note=f"accuracy {d_acc:+.2f} pt vs the long way (target ± 1 pt)"),
        row(f"lr_find num_it={NUM_IT}, long way", m["find_long"], "s", note="baseline"),
        row(f"lr_find num_it={NUM_IT} on cached features", m["find_pre"], "s",
            baseline="long way ÷ this", ratio=m["find_long"] / m["find_pre"]),
        row(f"GOAL precomputed head training ≥ 10× the long way, accuracy ± 1 pt",
            m["fit_long"] / m["head_only"], "×",
            note=("met" if m["fit_long"] / m["head_only"] >= 10 and abs(d_acc) <= 1 else "MISSED")
            + f" ({d_acc:+.2f} pt); with the one-off feature pass included the speed-up is "
              f"{m['fit_long'] / m['fit_pre']:.1f}× for {EPOCHS} epochs and grows with the epochs"),
        row(f"lesson flow: lr_find + {EPOCHS} frozen epochs, long way", m["find_long"] + m["fit_long"],
            "s", note="baseline (sum of the medians above)"),
        row(f"lesson flow: lr_find + {EPOCHS} frozen epochs, precompute (features included)",
            flow, "s", baseline="long way ÷ this", ratio=(m["find_long"] + m["fit_long"]) / flow,
            note=f"features + lr_find + head epochs; load average {load0[0]:.1f} at start, "
                 f"{load1[0]:.1f} at end, 2 cores shared"),
    ]


if __name__ == "__main__":
    print_rows(run(repeat=1 if "--quick" in sys.argv else 3))
