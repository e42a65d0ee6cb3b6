"""What `python -m engine.train` and `python -m engine.lr_find` share: the data and model options,
and turning them into RunSettings."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.settings import ARCHS, PRETRAINED_ARCHS, RunSettings, preset_for


class CliError(Exception):
    """A problem with the command line or its inputs; printed as one sentence, exit status 2."""


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options shared by engine.train and engine.lr_find: data, model and loader."""
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


def resolve_folder(data: str) -> tuple[Path, bool]:
    """(class-folder path, whether horizontal flips make sense) for a --data value."""
    from engine.data import digits_folder, pets_folder

    if data == "digits":
        return digits_folder(), False   # a mirrored 2 or 5 is not a digit
    if data in ("pets", "pets-species"):
        labels = "species" if data == "pets-species" else "breeds"
        last = [-1.0]

        def progress(frac: float, msg: str) -> None:
            if frac - last[0] >= 0.05 or frac >= 1:
                last[0] = frac
                print(f"  {msg} ({frac:.0%})", file=sys.stderr, flush=True)

        return pets_folder(labels=labels, progress=progress), True
    path = Path(data).expanduser()
    if not path.is_dir():
        raise CliError(f"--data must be digits, pets, pets-species or an existing folder; "
                       f"{data!r} is none of these.")
    return path, True


def settings_from_args(args: argparse.Namespace, **training: object) -> RunSettings:
    """RunSettings from the common options (the data source's preset fills what is not given),
    plus the training fields of the calling command."""
    preset = preset_for(args.data)
    arch = args.arch or preset["arch"]
    if args.arch and not args.no_pretrained and arch not in PRETRAINED_ARCHS:
        print(f"note: {arch} has no pretrained weights; training it from scratch.", file=sys.stderr)
    folder, flip = resolve_folder(args.data)
    return RunSettings(folder=str(folder), data_name=args.data, flip=flip, arch=arch,
                       pretrained=not args.no_pretrained and arch in PRETRAINED_ARCHS,
                       size=args.size or preset["size"], bs=args.bs or preset["bs"],
                       valid_pct=args.valid_pct, seed=args.seed, augment=not args.no_augment,
                       device=args.device, **training)  # type: ignore[arg-type]


def summary(s: RunSettings, learn: object) -> dict:
    """The settings a checkpoint and summary.json record (as the command line printed them)."""
    return {"data": s.data_name, "folder": s.folder, "arch": s.arch, "pretrained": s.pretrained,
            "size": s.size, "bs": s.bs, "seed": s.seed, "device": learn.device.type}  # type: ignore[attr-defined]


__all__ = ["CliError", "add_common_args", "resolve_folder", "settings_from_args", "summary"]
