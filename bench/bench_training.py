"""Training engine: the LR finder's cost against the same number of ordinary training steps, and
the offline default `python -m engine.train --data digits` (accuracy and wall time, data included).

Run: .venv/bin/python -m bench.bench_training   (add --quick for one repeat of each)
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_rows, row

ROOT = Path(__file__).resolve().parent.parent


def _digits_learner(data_root: Path, arch: str = "simple_cnn", size: int = 16, frozen: bool = False):
    import torch

    from engine.data import DataConfig, build_dataloaders, digits_folder
    from engine.models import create_model
    from engine.training import Learner

    dls = build_dataloaders(digits_folder(data_root / "digits"), DataConfig(size=size, bs=64, flip=False))
    torch.manual_seed(0)
    learn = Learner(create_model(arch, 10, pretrained=arch != "simple_cnn"), dls, device="cpu")
    if frozen:
        learn.freeze()
    return learn


def _plain_steps(learn, n: int, lr: float = 1e-3) -> None:
    """n ordinary training steps (the loop fit_one_cycle runs, without validation)."""
    learn.model.train()
    done = 0
    while done < n:
        for xb, yb in learn.dls.train:
            learn._set_hypers([lr])
            learn._train_step(xb, yb)
            done += 1
            if done == n:
                return


def lr_find_cost(data_root: Path, *, arch: str, size: int, num_it: int, repeat: int,
                 frozen: bool = False) -> list[dict]:
    learn = _digits_learner(data_root, arch, size, frozen)
    # stop_div=False so both sides run exactly num_it steps; warm-up once each.
    learn.lr_find(num_it=6, stop_div=False)
    _plain_steps(learn, 6)
    t_find, t_plain = [], []
    for _ in range(repeat):   # interleaved, so a noisy neighbour hits both sides alike
        t0 = time.perf_counter()
        learn.lr_find(num_it=num_it, stop_div=False, end_lr=1.0)
        t_find.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _plain_steps(learn, num_it)
        t_plain.append(time.perf_counter() - t0)
    f, p = statistics.median(t_find), statistics.median(t_plain)
    what = f"{arch}{' frozen' if frozen else ''}, {size} px, bs 64"
    return [row(f"{num_it} plain training steps ({what})", p, "s", note="baseline"),
            row(f"lr_find num_it={num_it} ({what})", f, "s", baseline="plain steps", ratio=f / p,
                target="≤ 1.5×", note="includes snapshot + restore")]


def digits_cli(repeat: int) -> list[dict]:
    """The CLI with its defaults, in a fresh data folder each time (PNG writing included)."""
    walls, accs, inner = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "DLLAB_DATA": str(Path(tmp) / "data")}
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "engine.train", "--data", "digits", "--out",
                                str(Path(tmp) / "run")], cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=600)
            walls.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"engine.train failed: {r.stderr[-2000:]}")
            summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
            accs.append(summary["accuracy"])
            inner.append(summary["seconds"])
    return [
        row("digits default CLI: wall time incl. start-up and data prep", statistics.median(walls), "s",
            target="≤ 60 s (aim 30 s)", note=f"runs: {', '.join(f'{w:.1f}' for w in walls)}"),
        row("digits default CLI: time inside main()", statistics.median(inner), "s"),
        row("digits default CLI: validation accuracy", 100 * min(accs), "%",
            target="≥ 97 % (aim 98.5 %)", note="lowest of the runs (seeded, so all equal)"),
    ]


def run(repeat: int = 3) -> list[dict]:
    """All rows: lr_find cost ratios and the digits default run."""
    import torch

    rows: list[dict] = [row("machine", os.cpu_count() or 0, "cores",
                            note=f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")]
    with tempfile.TemporaryDirectory() as tmp:
        rows += lr_find_cost(Path(tmp), arch="simple_cnn", size=16, num_it=100, repeat=repeat)
        rows += lr_find_cost(Path(tmp), arch="efficientnet_lite0", size=32, num_it=20,
                             repeat=repeat, frozen=True)
    rows += digits_cli(repeat)
    return rows


if __name__ == "__main__":
    print_rows(run(repeat=1 if "--quick" in sys.argv else 3))
