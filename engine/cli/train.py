"""Command-line entry point `python -m engine.train`: train an image classifier from the command line, so a teacher can train before class.

    python -m engine.train --data digits                       # offline default, about 20 s on 2 cores
    python -m engine.train --data pets --arch efficientnet_lite0 --fine-tune --epochs 2 --out runs/pets
    python -m engine.train --data path/to/bears --arch resnet34 --fine-tune --out runs/bears
    python -m engine.train --lr-find                           # the Train page's flow: finder, valley, train
    python -m engine.train --experiment lr_too_high            # one of the lesson's failure runs

Prints fastai's epoch table, then the coach's finding (`coach: <kind> — <title>`), and writes
DIR/model.safetensors (weights, class order, preprocessing, metrics) and DIR/valid_preds.csv (one
row per validation image) for the app to open.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from engine.fsutil import atomic_text_file
from engine.cli.common import CliError, add_common_args, settings_from_args, summary
from engine.experiments import EXPERIMENT_INFO, EXPERIMENTS, apply_experiment, describe
from engine.settings import FIELD_RULES, RunSettings, preset_for


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m:02d}:{s:02d}"


COLUMNS = ("epoch", "train_loss", "valid_loss", "error_rate", "time")


class EpochTable:
    """Prints fastai's table: a header per fit, one row per epoch, as soon as the epoch ends; keeps
    the batch records for the coach."""

    def __init__(self, out=sys.stdout):
        self.out = out
        self.batches: list[dict] = []

    def __call__(self, kind: str, **e: Any) -> None:
        if kind == "batch":
            self.batches.append(e)
        elif kind == "fit_start":
            if e.get("stage") == "frozen":
                print("body frozen: training the new head only", file=self.out)
            elif e.get("stage") == "unfrozen":
                print("all layers unfrozen", file=self.out)
            print("".join(f"{c:<12}" for c in COLUMNS).rstrip(), file=self.out, flush=True)
        elif kind == "epoch":
            cells = [str(e["epoch"]), f"{e['train_loss']:.6f}", f"{e['valid_loss']:.6f}",
                     f"{e['error_rate']:.6f}", _fmt_time(e["seconds"])]
            print("".join(f"{c:<12}" for c in cells).rstrip(), file=self.out, flush=True)


def write_preds(path: Path, preds: Any, classes: Sequence[str]) -> None:
    """valid_preds.csv: path, target, prediction, loss and every class probability per image."""
    with atomic_text_file(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "target", "pred", "correct", "loss"] + [f"p_{c}" for c in classes])
        paths = preds.paths or [""] * len(preds.targets)
        for p, t, y, loss, probs in zip(paths, preds.targets, preds.preds, preds.losses, preds.probs):
            w.writerow([p, classes[t], classes[y], int(t == y), f"{loss:.6g}"]
                       + [f"{v:.6g}" for v in probs])


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, train, print the table, write the checkpoint and predictions."""
    p = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 10 digits, 2 photos)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-2 digits, 2e-3 photos)")
    p.add_argument("--fine-tune", action="store_true",
                   help="fastai's fine_tune: --freeze-epochs on the head, then all layers")
    p.add_argument("--freeze-epochs", type=int, default=1, help="head-only epochs with --fine-tune")
    p.add_argument("--wd", type=float, default=None, help="weight decay (default 0.01, fastai's)")
    p.add_argument("--ps", type=float, default=None, help="dropout in the head (default 0.5, fastai's)")
    p.add_argument("--lr-find", action="store_true",
                   help="run the LR finder first and train at its valley suggestion (the Train page's flow)")
    p.add_argument("--experiment", default=None, choices=list(EXPERIMENTS),
                   help="one of the lesson's failure runs: its settings replace the ones above")
    p.add_argument("--out", default="runs/latest", help="folder for model.safetensors and valid_preds.csv")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    try:
        from engine.data import DataError
        from engine.device import default_device
        from engine.errors import TrainingError
        from engine.jobs.run_jobs import build_learner
        from engine.coach import diagnose
        from engine.fit_check import fit_check
        from engine.models import ModelError

        preset = preset_for(args.data)
        default_device(args.device)   # an unavailable device is refused before any data is read
        defaults = RunSettings()
        s = settings_from_args(args, epochs=args.epochs or preset["epochs"],
                               lr=args.lr or preset["lr"], freeze_epochs=args.freeze_epochs,
                               method="fine_tune" if args.fine_tune else "fit_one_cycle",
                               wd=defaults.wd if args.wd is None else args.wd,
                               ps=defaults.ps if args.ps is None else args.ps)
        for name in ("wd", "ps"):
            try:
                FIELD_RULES[name].check(name, getattr(s, name))
            except ValueError as exc:
                raise CliError(f"--{name} {getattr(s, name)} is {exc}.") from None
        lr_find = None
        if args.lr_find:
            s, lr_find = with_finder_lr(s, build_learner)
        if args.experiment:
            s = apply_experiment(s, args.experiment)
            info = EXPERIMENT_INFO[args.experiment]
            print(f"experiment {info.name}: {describe(info.overrides)}\n  expect: {info.symptom}",
                  flush=True)
        table = EpochTable()
        learn = build_learner(s, on_event=table)
        dls, settings = learn.dls, summary(s, learn)
        if dls.skipped:
            print(f"note: {len(dls.skipped)} files did not decode and were left out.", file=sys.stderr)
        print(f"{s.arch} ({'pretrained' if s.pretrained else 'from scratch'}) on "
              f"{len(dls.train_items)} training / {len(dls.valid_items)} validation images, "
              f"{len(dls.classes)} classes, {s.size} px, {settings['device']}", flush=True)
        learn.fit_settings(s)
        note = diagnose(learn.history, table.batches, settings=s, lr_find=lr_find,
                        fit=fit_check(learn)).primary
        print(f"coach: {note.kind} — {note.title}", flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        preds = learn.get_preds()
        seconds = time.perf_counter() - t0
        ckpt = learn.save(out / "model.safetensors", settings=settings,
                          run_settings=s.to_dict(), seconds=seconds)
        write_preds(out / "valid_preds.csv", preds, dls.classes)
    except (CliError, DataError, ModelError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    acc = preds.accuracy
    print(f"validation accuracy {acc:.2%} (error rate {1 - acc:.2%}) on {len(preds.targets)} images; "
          f"{seconds:.1f} s in all")
    print(f"saved {ckpt} and {out / 'valid_preds.csv'}")
    (out / "summary.json").write_text(json.dumps({"accuracy": acc, "seconds": seconds, **settings,
                                                  "lr": s.lr, "coach": note.kind,
                                                  "experiment": args.experiment}, indent=2))
    return 0


def with_finder_lr(s: RunSettings, build_learner: Any) -> tuple[RunSettings, dict]:
    """Run the LR finder as the Train page does (a pretrained body frozen) and take its valley,
    rounded as the page shows it; returns the settings and the finder's record for the coach."""
    res = build_learner(s, for_lr_find=True).lr_find(num_it=s.num_it)
    valley = res.suggestions.get("valley")
    record = {"lrs": res.lrs, "losses": res.losses, "suggestions": res.suggestions}
    if valley:
        s = s.with_(lr=float(f"{valley:.2e}"))
    print(f"LR finder: valley {valley:.2e}; training at lr {s.lr:.2e}" if valley else
          f"LR finder: no valley suggestion; training at lr {s.lr:.2e}", flush=True)
    return s, record
