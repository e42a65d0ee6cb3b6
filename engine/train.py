"""Train an image classifier from the command line, so a teacher can train before class.

    python -m engine.train --data digits                       # offline default, about 20 s on 2 cores
    python -m engine.train --data pets --arch efficientnet_lite0 --fine-tune --epochs 2 --out runs/pets
    python -m engine.train --data path/to/bears --arch resnet34 --fine-tune --out runs/bears

Prints fastai's epoch table and writes DIR/model.safetensors (weights, class order, preprocessing,
metrics) and DIR/valid_preds.csv (one row per validation image) for the app to open.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

#: Per-data-set defaults: digits are 8×8 pixels, so a small CNN from scratch at 16 px wins on a CPU.
DIGITS_DEFAULTS = {"arch": "simple_cnn", "size": 16, "bs": 64, "epochs": 10, "lr": 1e-2}
PHOTO_DEFAULTS = {"arch": "efficientnet_lite0", "size": 224, "bs": 64, "epochs": 2, "lr": 2e-3}


class CliError(Exception):
    """A problem with the command line or its inputs; printed as one sentence, exit status 2."""


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options shared by engine.train and engine.lr_find: data, model and loader."""
    from engine.models import ARCHS

    p.add_argument("--data", default="digits",
                   help="digits (offline, built in), pets (Oxford-IIIT Pet, downloaded once), "
                        "pets-species (cat vs dog) or a folder of class folders")
    p.add_argument("--arch", default=None, choices=list(ARCHS),
                   help="architecture (default: simple_cnn for digits, efficientnet_lite0 otherwise)")
    p.add_argument("--no-pretrained", action="store_true", help="start from random weights")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 16 digits, 224 photos)")
    p.add_argument("--bs", type=int, default=None, help="batch size (default 64)")
    p.add_argument("--valid-pct", type=float, default=0.2, help="validation share when there is no valid/ folder")
    p.add_argument("--no-augment", action="store_true", help="turn off training augmentation")
    p.add_argument("--seed", type=int, default=42, help="seed for the split, the order and the weights")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: fastest present)")


def defaults_for(data: str) -> dict[str, Any]:
    return DIGITS_DEFAULTS if data == "digits" else PHOTO_DEFAULTS


def resolve_folder(data: str) -> tuple[Path, bool]:
    """(class-folder path, whether horizontal flips make sense) for a --data value."""
    from engine import data as D

    if data == "digits":
        return D.digits_folder(), False   # a mirrored 2 or 5 is not a digit
    if data in ("pets", "pets-species"):
        labels = "species" if data == "pets-species" else "breeds"
        last = [-1.0]

        def progress(frac: float, msg: str) -> None:
            if frac - last[0] >= 0.05 or frac >= 1:
                last[0] = frac
                print(f"  {msg} ({frac:.0%})", file=sys.stderr, flush=True)

        return D.pets_folder(labels=labels, progress=progress), True
    path = Path(data).expanduser()
    if not path.is_dir():
        raise CliError(f"--data must be digits, pets, pets-species or an existing folder; "
                       f"{data!r} is none of these.")
    return path, True


def prepare(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """Build (data loaders, model, settings) from parsed common arguments."""
    from engine import data as D
    from engine.models import PRETRAINED_ARCHS, create_model
    from engine.training import default_device, seed_everything

    d = defaults_for(args.data)
    arch = args.arch or d["arch"]
    size = args.size or d["size"]
    bs = args.bs or d["bs"]
    pretrained = not args.no_pretrained and arch in PRETRAINED_ARCHS
    if args.arch and not args.no_pretrained and arch not in PRETRAINED_ARCHS:
        print(f"note: {arch} has no pretrained weights; training it from scratch.", file=sys.stderr)
    device = default_device(args.device)
    folder, flip = resolve_folder(args.data)
    cfg = D.DataConfig(size=size, bs=bs, valid_pct=args.valid_pct, seed=args.seed,
                       augment=not args.no_augment, flip=flip)
    dls = D.build_dataloaders(folder, cfg, device=device.type)
    if dls.skipped:
        print(f"note: {len(dls.skipped)} files did not decode and were left out.", file=sys.stderr)
    seed_everything(args.seed)
    model = create_model(arch, len(dls.classes), pretrained=pretrained)
    settings = {"data": args.data, "folder": str(folder), "arch": arch, "pretrained": pretrained,
                "size": size, "bs": bs, "seed": args.seed, "device": device.type}
    return dls, model, settings


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m:02d}:{s:02d}"


COLUMNS = ("epoch", "train_loss", "valid_loss", "error_rate", "time")


class EpochTable:
    """Prints fastai's table: a header per fit, one row per epoch, as soon as the epoch ends."""

    def __init__(self, out=sys.stdout):
        self.out = out

    def __call__(self, kind: str, **e: Any) -> None:
        if kind == "fit_start":
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
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "target", "pred", "correct", "loss"] + [f"p_{c}" for c in classes])
        paths = preds.paths or [""] * len(preds.targets)
        for p, t, y, loss, probs in zip(paths, preds.targets, preds.preds, preds.losses, preds.probs):
            w.writerow([p, classes[t], classes[y], int(t == y), f"{loss:.6g}"]
                       + [f"{v:.6g}" for v in probs])
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, train, print the table, write the checkpoint and predictions."""
    from engine.training import TrainConfig

    p = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 10 digits, 2 photos)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-2 digits, 2e-3 photos)")
    p.add_argument("--fine-tune", action="store_true",
                   help="fastai's fine_tune: --freeze-epochs on the head, then all layers")
    p.add_argument("--freeze-epochs", type=int, default=1, help="head-only epochs with --fine-tune")
    p.add_argument("--out", default="runs/latest", help="folder for model.safetensors and valid_preds.csv")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    try:
        from engine.data import DataError
        from engine.models import ModelError
        from engine.training import Learner, TrainingError

        d = defaults_for(args.data)
        dls, model, settings = prepare(args)
        cfg = TrainConfig(epochs=args.epochs or d["epochs"], lr=args.lr or d["lr"],
                          fine_tune=args.fine_tune, freeze_epochs=args.freeze_epochs,
                          seed=args.seed, device=settings["device"])
        print(f"{settings['arch']} ({'pretrained' if settings['pretrained'] else 'from scratch'}) on "
              f"{len(dls.train_items)} training / {len(dls.valid_items)} validation images, "
              f"{len(dls.classes)} classes, {settings['size']} px, {settings['device']}", flush=True)
        learn = Learner(model, dls, device=settings["device"], wd=cfg.wd, on_event=EpochTable())
        learn.fit_config(cfg)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        preds = learn.get_preds()
        seconds = time.perf_counter() - t0
        ckpt = learn.save(out / "model.safetensors", settings=settings,
                          train_config=asdict(cfg), seconds=seconds)
        write_preds(out / "valid_preds.csv", preds, dls.classes)
    except (CliError, DataError, ModelError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    acc = preds.accuracy
    print(f"validation accuracy {acc:.2%} (error rate {1 - acc:.2%}) on {len(preds.targets)} images; "
          f"{seconds:.1f} s in all")
    print(f"saved {ckpt} and {out / 'valid_preds.csv'}")
    (out / "summary.json").write_text(json.dumps({"accuracy": acc, "seconds": seconds, **settings},
                                                 indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
