"""Command-line entry point `python -m engine.lr_find`: run the LR finder and print what each rule suggests.

    python -m engine.lr_find --data digits
    python -m engine.lr_find --data path/to/bears --arch efficientnet_lite0 --frozen --out runs/bears

The model and optimiser are put back afterwards, so nothing is saved but (with --out) the curve.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence

from engine.cli.common import CliError, add_common_args, settings_from_args

RULE_HELP = {
    "valley": "a third of the way down the longest falling stretch (fastai's default)",
    "slide": "where the slope stops changing, sliding in from the right",
    "minimum": "a tenth of the lr at the lowest loss",
    "steep": "where the loss falls fastest",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run lr_find, print the suggestions (and write the curve with --out)."""
    p = argparse.ArgumentParser(prog="python -m engine.lr_find", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate")
    p.add_argument("--end-lr", type=float, default=10.0, help="last learning rate")
    p.add_argument("--num-it", type=int, default=100, help="mini-batches to try (at least 6)")
    p.add_argument("--frozen", action="store_true",
                   help="freeze the body first, as before fine_tune's first stage")
    p.add_argument("--out", default=None, help="folder to write lr_find.csv (lr, smoothed loss)")
    args = p.parse_args(argv)
    try:
        from engine.data import DataError
        from engine.device import default_device
        from engine.errors import TrainingError
        from engine.jobs.run_jobs import build_learner
        from engine.models import ModelError

        default_device(args.device)   # an unavailable device is refused before any data is read
        s = settings_from_args(args, method="fine_tune")   # a pretrained body is never frozen unasked
        learn = build_learner(s)
        if args.frozen:
            learn.freeze()
        res = learn.lr_find(args.start_lr, args.end_lr, args.num_it)
    except (CliError, DataError, ModelError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{s.arch}: {len(res.lrs)} mini-batches, lr {res.lrs[0]:.2e} to {res.lrs[-1]:.2e}"
          + (" (stopped: the loss diverged)" if res.stopped_early else ""))
    print(f"{'rule':<9}{'lr':<12}meaning")
    for name, lr in res.suggestions.items():
        shown = f"{lr:.2e}" if lr is not None else "-"
        print(f"{name:<9}{shown:<12}{RULE_HELP[name]}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "lr_find.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["lr", "smooth_loss", "loss"])
            w.writerows(zip(res.lrs, res.losses, res.raw_losses))
        print(f"saved {out / 'lr_find.csv'}")
    return 0
