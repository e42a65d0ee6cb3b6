"""What the Train page runs in the background for one run: the LR finder and training, as job
functions `fn(ctx, settings, ...)` for engine.jobs.JobRunner. No streamlit here: the page only
submits and watches.

Events added to the Learner's own (fields typed in engine.events):
  stage       message              (loading data, building the model, saving)
  note        message              (a sentence for the user, e.g. why precompute was not used, or
                                    that it kept the body's batch norm fixed)
  lr_found    lrs, losses, suggestions, stopped_early, cancelled, precompute
  saved       run_id, status
While body features are computed (precompute), job.message reads
"Computing body features: 640 / 1438" (training and validation images together).
"""
from __future__ import annotations

import math
import time
from typing import Any

from engine.events import LRFindResultDict, PrecomputeRecord, TrainResult
from engine.fit_check import fit_check
from engine.jobs.runner import remote_job
from engine.jobs.stores import LocalRunStore, RunStore
from engine.settings import RunSettings, precompute_note, precompute_reason


def _precompute_applies(s: RunSettings) -> bool:
    return bool(s.precompute) and precompute_reason(s) is None


def train_bn_for(s: RunSettings) -> bool:
    """Whether a frozen body's batch norm trains in this run: s.train_bn (fastai's default), except
    when precompute will be used, which needs it fixed (engine.settings.precompute_note)."""
    return bool(s.train_bn) and not _precompute_applies(s)


def build_learner(s: RunSettings, *, on_event: Any = None, should_stop: Any = None,
                  progress: Any = None, between: Any = None, for_lr_find: bool = False,
                  store: RunStore | None = None) -> Any:
    """Data loaders, model (fresh, or a saved run's to continue) and the Learner, as s describes.

    A pretrained body starts frozen for fit_one_cycle, as fastai's vision_learner does; for the LR
    finder it is frozen too, since fine_tune's first stage trains the head. Inputs are normalised
    as the weights expect (RunSettings.data_config; a continued model as it was trained).
    `between()` is called after the images are read (a job's cancel check). The model to
    continue comes from `store` (the run store here, or what a Ray worker was sent).
    """
    import dataclasses

    from engine.data import build_dataloaders
    from engine.device import default_device, seed_everything
    from engine.errors import TrainingError
    from engine.models import create_model, set_head_dropout
    from engine.training import Learner

    emit = on_event or (lambda kind, **e: None)
    device = default_device(s.device)
    cfg, ck = s.data_config(), None
    if s.method == "unfreeze":
        if not s.start_from:
            raise TrainingError("Unfreezing continues a trained model: train first (fine_tune or "
                                "fit_one_cycle), then choose “unfreeze”.")
        ck = (store or LocalRunStore()).open_model(s.start_from)
        cfg = dataclasses.replace(cfg, mean=tuple(ck.meta["mean"]), std=tuple(ck.meta["std"]))
    emit("stage", message="Reading the images")
    dls = build_dataloaders(s.folder, cfg, device=device.type, progress=progress)
    if between is not None:
        between()
    emit("stage", message="Building the model")
    seed_everything(s.seed)
    train_bn = train_bn_for(s)
    if ck is not None:
        if ck.classes != list(dls.classes):
            raise TrainingError("The last run was trained on other classes; train on this data "
                                "set first, then unfreeze.")
        model = ck.model
        model.unfreeze()
        set_head_dropout(model, s.ps)     # a checkpoint holds no dropout: this run's own
    else:
        model = create_model(s.arch, len(dls.classes), pretrained=s.uses_pretrained, ps=s.ps)
        if s.uses_pretrained and (s.method == "fit_one_cycle" or for_lr_find):
            model.freeze(train_bn)
    return Learner(model, dls, device=device, wd=s.wd, seed=None, on_event=on_event,
                   should_stop=should_stop, precision=s.precision, train_bn=train_bn)


def _prepare(ctx: Any, s: RunSettings, *, for_lr_find: bool = False,
             store: RunStore | None = None) -> Any:
    return build_learner(s, on_event=ctx.emit, should_stop=lambda: ctx.cancelled,
                         progress=lambda f, m: ctx.progress(0.0, m), between=ctx.check_cancelled,
                         for_lr_find=for_lr_find, store=store)


def _precompute_setup(ctx: Any, learn: Any, s: RunSettings) -> PrecomputeRecord:
    """When s asks for precompute: check it applies and compute the body features now (the fit
    or LR finder then reuses them). If it does not apply, say why in a note event and go the long
    way. Returns what the run's history records."""
    from engine.precompute import why_not

    record: PrecomputeRecord = {"requested": bool(s.precompute), "used": False, "reason": None,
                                "seconds": None}
    if not s.precompute:
        return record
    reason = precompute_reason(s)
    if reason is None:
        if s.method == "fine_tune" and not getattr(learn.model, "frozen", False):
            learn.freeze(False)   # fine_tune's first stage (it freezes again itself: harmless)
        reason = why_not(learn)
    if reason is not None:
        record["reason"] = reason
        ctx.emit("note", message=f"Precompute was not used, so this runs the long way: {reason}")
        return record
    note = precompute_note(s)
    if note is not None:
        ctx.emit("note", message=note)
    ctx.emit("stage", message="Computing body features")
    cache = learn.precompute_features()
    record.update(used=True, seconds=round(cache.seconds, 3))
    return record


def _on_precompute_event(ctx: Any, learn: Any, e: dict, fraction: float) -> None:
    """Progress of the feature computation as one count over training and validation images."""
    n_train = len(learn.dls.train.dataset)
    done = e["done"] + (n_train if e["split"] == "valid" else 0)
    total = n_train + len(learn.dls.valid.dataset)
    ctx.progress(fraction, f"Computing body features: {done:,} / {total:,}")
    ctx.check_cancelled()   # a large data set takes a while: a cancel stops it here


@remote_job
def lr_find_job(ctx: Any, s: RunSettings, *, store: RunStore | None = None) -> LRFindResultDict:
    """Run the LR finder on the settings' data and model; nothing is saved."""
    learn = _prepare(ctx, s, for_lr_find=True, store=store)
    n_it = max(6, int(s.num_it))

    def on_event(kind: str, **e: Any) -> None:
        ctx.emit(kind, **e)
        if kind == "lr_find":
            ctx.progress(e["step"] / n_it, f"step {e['step']} of {n_it}")
        elif kind == "precompute":
            _on_precompute_event(ctx, learn, e, 0.0)

    learn.on_event = on_event
    pre = _precompute_setup(ctx, learn, s)
    ctx.emit("stage", message="Finding a learning rate")
    res = learn.lr_find(num_it=n_it, precompute=pre["used"])
    out: LRFindResultDict = {"kind": "lr_find", "lrs": res.lrs, "losses": res.losses,
                             "suggestions": res.suggestions, "stopped_early": res.stopped_early,
                             "cancelled": learn.cancelled, "precompute": pre}
    ctx.emit("lr_found", **{k: v for k, v in out.items() if k != "kind"})
    return out


@remote_job
def train_job(ctx: Any, s: RunSettings, owner: str = "", lr_find_result: dict | None = None, *,
              store: RunStore | None = None) -> TrainResult:
    """Train as s says and, for an owner, save the run (also when cancelled after at least one
    epoch: the Learner rolled back to the last finished one) into `store` (the run store here by
    default; a Ray worker ships it back to the server). lr_find_result is kept in the run's
    history."""
    learn = _prepare(ctx, s, store=store)
    n_batches = len(learn.dls.train)
    total = (s.freeze_epochs + s.epochs if s.method == "fine_tune" else s.epochs) * n_batches
    batches: list[dict] = []

    def on_event(kind: str, **e: Any) -> None:
        ctx.emit(kind, **e)
        if kind == "batch":
            batches.append({"kind": kind, "time": time.time(), **e})
            ctx.progress(len(batches) / max(total, 1), f"epoch {e['epoch'] + 1}")
        elif kind == "precompute":
            _on_precompute_event(ctx, learn, e, len(batches) / max(total, 1))

    learn.on_event = on_event
    t_start = time.perf_counter()
    pre = _precompute_setup(ctx, learn, s)
    ctx.emit("stage", message="Training" + (" the head on the cached features" if pre["used"]
                                            else ""))
    learn.fit_settings(s.with_(precompute=pre["used"]))
    seconds = time.perf_counter() - t_start
    epochs = list(learn.history)
    status = "cancelled" if learn.cancelled else "done"
    training = training_record(learn)
    # The training images measured as the validation ones, for the coach (engine.fit_check).
    fit = fit_check(learn) if epochs else None
    out: TrainResult = {"kind": "train", "epochs": epochs, "batches": batches,
                        "cancelled": learn.cancelled, "run_id": None, "seconds": seconds,
                        "n_batches": n_batches, "steps": len(batches), "precompute": pre,
                        "training": training, "fit": fit, "settings": s.to_dict(),
                        "lr_find": lr_find_result}
    if epochs and owner:
        ctx.emit("stage", message="Saving the run")
        settings = s.to_dict()
        settings["device"] = learn.device.type
        settings["precompute"] = pre["used"]     # what ran, not only what was asked for
        settings["train_bn"] = learn.train_bn
        history = {"batches": [{k: b.get(k) for k in ("stage", "epoch", "step", "lr", "loss",
                                                       "smooth_loss")} for b in batches],
                   "epochs": epochs, "lr_find": lr_find_result, "precompute": pre,
                   "training": training, "fit": fit}
        info = (store or LocalRunStore()).save(learn, owner=owner, data_name=s.data_name,
                                               settings=settings, history=history, status=status)
        out["run_id"] = info.id
        out["metrics"] = info.metrics
        ctx.emit("saved", run_id=info.id, status=status)
    return out


def training_record(learn: Any) -> dict[str, Any]:
    """How the run computed, for its record: the autocast precision ("fp32", "bf16", "fp16"),
    whether a frozen body's batch norm trained, the parameter groups (earliest first, each with
    its own learning rate), and why a seeded rerun would not repeat it bit for bit (None: it
    would)."""
    from engine.device import repeatability_note
    from engine.schedule import group_names

    return {"precision": learn.precision, "train_bn": learn.train_bn,
            "param_groups": group_names(learn.n_groups),
            "not_repeatable": repeatability_note(learn.device)}


def live_message(events: list[dict], message: str, default: str) -> str:
    """The progress text for a running job: while body features are being computed (its newest
    event is a precompute one), the job's message ("Computing body features: 640 / 1438");
    otherwise default."""
    if events and events[-1]["kind"] == "precompute" and message:
        return message
    return default


def eta(fraction: float, elapsed: float) -> float | None:
    """Seconds left at a steady pace, or None before there is anything to go on."""
    if fraction <= 0 or elapsed <= 0 or not math.isfinite(fraction):
        return None
    return max(0.0, elapsed * (1 - fraction) / fraction)


__all__ = ["train_bn_for", "training_record", "build_learner", "lr_find_job", "train_job",
           "live_message", "eta"]
