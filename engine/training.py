"""Training: the Learner — a model, its data loaders, a loss and an AdamW optimiser.

The maths follows fastai so the numbers match the course: AdamW (betas 0.9, 0.99; eps 1e-5),
decoupled weight decay that skips batch-norm and bias parameters (engine.optimizer), a smoothed
training loss (EMA 0.98, debiased), one-cycle stages planned by engine.schedule, fine_tune = frozen
epochs then discriminative rates; a frozen body's batch norm keeps training (train_bn) and the
optimiser state starts afresh whenever the frozen part changes, as fastai's freeze_to. LR rules
(engine.lr_rules), device helpers (engine.device) and evaluation (engine.evaluation) are
re-exported here. Precompute is a mode the Learner is given (`precompute=True`): it switches
itself to engine.precompute's cached body features for the block. Events go to
`on_event(kind, **data)`, typed in engine.events; on CUDA losses are read back once per `sync_every`
batches so the GPU is never stalled per batch.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from engine import precompute as features
from engine.device import (amp_dtype_for, autocast_for, batch_to_device, default_device,
                           physical_cores, precision_name, seed_everything, set_cpu_threads,
                           training_dtype)
from engine.errors import TrainingError
from engine.evaluation import Preds, accuracy, error_rate, evaluate, predictions
from engine.optimizer import clear_state, make_adamw, set_hypers
from engine.lr_rules import (RULES, SUGGESTION_RULES, LRFindResult, minimum, slide, steep, suggest,
                             trim_for_suggestions, valley)
from engine.schedule import (MOMS, Schedule, Stage, fine_tune_stages, fit_one_cycle_stage,
                             one_cycle_at, one_cycle_schedule, stages_for)
from engine.settings import RunSettings

EventSink = Callable[..., None]


class Learner:
    """A model, its data loaders, a loss and an AdamW optimiser; trains, evaluates, predicts.

    dls is any object with .train and .valid (iterables of (x, y) batches) and .classes; .size,
    .mean, .std and .valid_items are used when present (for predict and file paths).
    """

    def __init__(self, model: nn.Module, dls: Any, *, loss_func: nn.Module | None = None,
                 device: str | torch.device | None = None, wd: float = 0.01,
                 seed: int | None = None, on_event: EventSink | None = None,
                 should_stop: Callable[[], bool] | Any = None, smooth_beta: float = 0.98,
                 mixed_precision: bool | None = None, channels_last: bool | None = None,
                 sync_every: int | None = None, precision: str = "auto", train_bn: bool = True):
        """precision: auto | fp32 | bf16 | fp16 (engine.device.training_dtype; with "auto",
        mixed_precision None = autocast on CUDA only, True = bf16 autocast on any device, e.g. to
        test the GPU path on a CPU); channels_last: None = on for CUDA and CPU; sync_every: batches
        per loss read-back (None: 1 on a CPU, where reading costs nothing, 20 on a GPU);
        train_bn: what freeze() does with the body's batch norm (fastai's default True)."""
        if seed is not None:
            seed_everything(seed)
        self.dls = dls
        self.device = default_device(str(device)) if device is not None else default_device()
        self.model = model.to(self.device)
        self.loss_func = loss_func or nn.CrossEntropyLoss()
        self.wd = wd
        self.on_event = on_event
        self._should_stop = should_stop
        self.smooth_beta = smooth_beta
        self.cancelled = False
        self.train_bn = bool(train_bn)
        self.history: list[dict[str, Any]] = []   # one row per finished epoch, all fits
        self.batch_log: list[dict[str, Any]] = []  # (step, lr, loss, smooth_loss) of the last fit
        cuda = self.device.type == "cuda"
        if channels_last is None:
            # Tensor cores and oneDNN's CPU convolutions both prefer NHWC: measured on the 2-core
            # CPU, fwd+bwd of efficientnet_lite0 at 64 px 2.0x, resnet18 1.2x, simple_cnn at 32 px
            # 1.2x, and never more than 5 % slower (resnet18 at 32 px). Apple MPS is left alone.
            channels_last = self.device.type in ("cuda", "cpu")
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = training_dtype(self.device, precision, mixed_precision=mixed_precision)
        self.precision = precision_name(self.amp_dtype)   # "fp32" | "bf16" | "fp16", as recorded
        # fp16's narrow range needs loss scaling; bf16 has float32's range.
        scale = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type) if scale else None
        self.sync_every = max(1, int(sync_every)) if sync_every else (20 if cuda else 1)
        if cuda:
            # Fixed image sizes: let cuDNN time its algorithms once and keep the fastest.
            torch.backends.cudnn.benchmark = True
        elif self.device.type == "cpu" and torch.get_num_threads() > physical_cores():
            set_cpu_threads()   # more threads than cores only makes them wait on each other
        self._features: features.FeatureCache | None = None   # the last precomputed features
        self.opt = self._make_optimizer()

    # ------------------------------------------------------------------ optimiser and schedules

    @property
    def n_groups(self) -> int:
        return len(self._layer_groups())

    def _layer_groups(self) -> list[list[nn.Parameter]]:
        if hasattr(self.model, "param_groups"):
            return self.model.param_groups()
        return [list(self.model.parameters())]

    def _make_optimizer(self) -> torch.optim.AdamW:
        return make_adamw(self.model, self._layer_groups(), self.wd, self.device)

    def _set_hypers(self, lrs: Sequence[float], mom: float | None = None) -> None:
        set_hypers(self.opt, lrs, mom)

    # ------------------------------------------------------------------------------- plumbing

    def emit(self, kind: str, **data: Any) -> None:
        """Send an event to on_event, if any (fields: engine.events)."""
        if self.on_event is not None:
            self.on_event(kind, **data)


    def _stop_requested(self) -> bool:
        s = self._should_stop
        if s is None:
            return False
        if hasattr(s, "is_set"):
            return bool(s.is_set())
        return bool(s())

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context this Learner computes in (a no-op in float32)."""
        return autocast_for(self.device, self.amp_dtype)


    def to_device(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on this Learner's device, in its memory format."""
        return batch_to_device(xb, yb, self.device, channels_last=self.channels_last)


    def _train_step_async(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One optimiser step on one batch; returns the batch loss as a detached device tensor
        (reading it back to Python would wait for the GPU to finish the step)."""
        xb, yb = self.to_device(xb, yb)
        with self.autocast():
            out = self.model(xb)
        loss = self.loss_func(out.float(), yb)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return loss.detach()

    def _train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        """One optimiser step on one batch; returns the batch loss."""
        return float(self._train_step_async(xb, yb))

    def _snapshot(self) -> dict[str, Any]:
        """Model, optimiser and scaler state, copied in memory."""
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "opt": copy.deepcopy(self.opt.state_dict()),
                "scaler": copy.deepcopy(self.scaler.state_dict()) if self.scaler else None}

    def _restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        self.opt.load_state_dict(snap["opt"])
        if self.scaler is not None and snap["scaler"] is not None:
            self.scaler.load_state_dict(snap["scaler"])
        self.opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------------------ precompute

    def precompute_features(self, *, force: bool = False) -> features.FeatureCache:
        """The frozen body's features of every training and validation item, computed once and
        reused while the body, the data and the device settings are unchanged. A body frozen with
        train_bn is frozen again without it: features are only fixed if its batch norm is."""
        reason = features.why_not(self, refreeze_bn=True)
        if reason is not None:
            raise TrainingError(reason)
        if getattr(self.model, "train_bn", False):
            self.freeze(train_bn=False)
            self.emit("note", message=features.BN_NOTE)
        key = features.cache_key(self)
        if self._features is None or self._features.key != key or force:
            self._features = features.compute_features(self, key)
        return self._features

    @contextlib.contextmanager
    def _on_features(self) -> Iterator[features.FeatureCache]:
        """Within the block, train, validate and find rates on cached features: the model is the
        head part and the loaders go over the features; both are put back afterwards."""
        cache = self.precompute_features()
        saved = self.model, self.dls, self.channels_last
        self.model = features.HeadOnly(cache.head)
        self.dls = features.feature_loaders(self.dls, cache)
        self.channels_last = False       # features are (B, F) vectors
        try:
            yield cache
        finally:
            self.model, self.dls, self.channels_last = saved

    # ------------------------------------------------------------------------------ evaluation

    def validate(self, loader: Iterable | None = None) -> dict[str, float]:
        """valid_loss, error_rate and accuracy over the validation loader (no augmentation)."""
        return evaluate(self.model, self.dls.valid if loader is None else loader, self.loss_func,
                        self.to_device, self.autocast)

    def get_preds(self, loader: Iterable | None = None) -> Preds:
        """Probabilities, targets and per-item losses on the validation set, in its order."""
        items = getattr(self.dls, "valid_items", None) if loader is None else None
        return predictions(self.model, self.dls.valid if loader is None else loader,
                           len(getattr(self.dls, "classes", [])) or 0, self.to_device,
                           self.autocast, items)

    def predict(self, image: np.ndarray, device: str = "cpu") -> tuple[str, int, np.ndarray]:
        """(class, index, probabilities) for one uint8 H×W×3 image, preprocessed like validation."""
        from engine.models import IMAGENET_MEAN, IMAGENET_STD, predict_image

        classes = list(self.dls.classes)
        size = int(getattr(self.dls, "size", 224))
        mean = getattr(self.dls, "mean", IMAGENET_MEAN)
        std = getattr(self.dls, "std", IMAGENET_STD)
        model = self.model
        if torch.device(device) != self.device:
            model = copy.deepcopy(self.model).to(device).to(memory_format=torch.contiguous_format)
        return predict_image(model, image, classes, size=size, mean=mean, std=std, device=device)

    # ------------------------------------------------------------------------------- LR finder

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100,
                stop_div: bool = True, rules: Iterable[str] = SUGGESTION_RULES, *,
                precompute: bool = False) -> LRFindResult:
        """Train briefly with an exponentially growing LR, record the smoothed loss, then put the
        model and optimiser back exactly as they were (from memory) and suggest learning rates.

        precompute=True (frozen body, no augmentation): on cached body features.
        """
        if precompute:
            with self._on_features():
                return self.lr_find(start_lr, end_lr, num_it, stop_div, rules)
        n_steps = max(num_it, 6)
        if len(self.dls.train) == 0:
            raise TrainingError("The training set is empty, so the LR finder has nothing to learn from.")
        snap = self._snapshot()
        was_training = self.model.training
        lrs, losses, raw = [], [], []
        avg, best, done = 0.0, math.inf, False
        try:
            self.model.train()
            step = 0
            while not done:  # as many passes over the training set as num_it needs
                for xb, yb in self.dls.train:
                    if self._stop_requested():
                        self.cancelled = done = True
                        break
                    lr = start_lr * (end_lr / start_lr) ** (step / n_steps)
                    self._set_hypers([lr])
                    loss = self._train_step(xb, yb)
                    step += 1
                    avg = self.smooth_beta * avg + (1 - self.smooth_beta) * loss
                    smooth = avg / (1 - self.smooth_beta ** step)
                    lrs.append(lr)
                    losses.append(smooth)
                    raw.append(loss)
                    self.emit("lr_find", step=step, lr=lr, loss=loss, smooth_loss=smooth)
                    best = min(best, smooth)
                    if step >= n_steps or (stop_div and smooth > 4 * best):
                        done = True
                        break
        finally:
            self._restore(snap)
            self.model.train(was_training)
        return LRFindResult(lrs, losses, raw, suggest(lrs, losses, num_it, rules), num_it,
                            stopped_early=len(lrs) < n_steps)

    # ------------------------------------------------------------------------------- training

    def fit_one_cycle(self, epochs: int, lr_max: float | slice = 1e-3, *, div: float = 25.0,
                      div_final: float = 1e5, pct_start: float = 0.25,
                      moms: Sequence[float] = MOMS, wd: float | None = None,
                      stage: str = "train", precompute: bool = False) -> list[dict[str, Any]]:
        """Train for `epochs` with a one-cycle schedule; returns this fit's epoch rows.

        If a stop is requested, the model and optimiser go back to the end of the last finished
        epoch (or to the start), so what is kept always matches a row of the table.
        precompute=True (frozen body, no augmentation; else TrainingError with the reason): the
        body's features are computed once and only the head is trained on them: the same model as
        the long way, many times faster.
        """
        st = fit_one_cycle_stage(epochs, lr_max, div=div, div_final=div_final,
                                 pct_start=pct_start, moms=moms, name=stage)
        return self.fit_stages([st], wd=wd, precompute=precompute)

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1,
                  lr_mult: float = 100, pct_start: float = 0.3, div: float = 5.0,
                  precompute: bool = False, *, div_final: float = 1e5,
                  moms: Sequence[float] = MOMS, wd: float | None = None) -> list[dict[str, Any]]:
        """fastai's fine_tune: head only for freeze_epochs (one-cycle, pct_start 0.99), then every
        layer for epochs with slice(base_lr/2/lr_mult, base_lr/2), pct_start 0.3, div 5.
        precompute=True runs the frozen epochs on cached body features."""
        stages = fine_tune_stages(epochs, base_lr, freeze_epochs, lr_mult=lr_mult,
                                  pct_start=pct_start, div=div, div_final=div_final, moms=moms)
        return self.fit_stages(stages, wd=wd, precompute=precompute)

    def fit_settings(self, s: RunSettings) -> list[dict[str, Any]]:
        """Run the stages RunSettings describe (its method, epochs, rates and precompute)."""
        stages = stages_for(s.method, s.epochs, s.lr, freeze_epochs=s.freeze_epochs,
                            lr_lo=s.lr_lo)
        return self.fit_stages(stages, wd=s.wd, precompute=s.precompute)

    def fit_stages(self, stages: Sequence[Stage], *, wd: float | None = None,
                   precompute: bool = False) -> list[dict[str, Any]]:
        """Fit each stage in turn (engine.schedule plans them: the Train page's preview shows the
        same plan). precompute applies to the stages that run with a frozen body."""
        rows: list[dict[str, Any]] = []
        for st in stages:
            if st.freeze:
                # Precompute needs the body's batch norm fixed too (engine.precompute.BN_NOTE).
                self.freeze(train_bn=False if precompute else None)
            elif st.freeze is False:
                self.unfreeze()
            if st.epochs < 1:
                raise TrainingError("Train for at least one epoch.")
            n_batches = len(self.dls.train)
            if n_batches == 0:
                raise TrainingError("The training set is empty; add images or lower the batch size.")
            if wd is not None:
                for g in self.opt.param_groups:
                    g["weight_decay"] = wd if g["decay"] else 0.0
            sched = st.schedule(n_batches, self.n_groups)
            peak = st.peak(self.n_groups)
            if precompute and st.freeze is not False:
                with self._on_features():
                    rows += self._fit(st.epochs, sched, st.name, peak)
                self.model.train(False)
            else:
                rows += self._fit(st.epochs, sched, st.name, peak)
            if self.cancelled:
                break
        return rows

    def _fit(self, epochs: int, sched: Schedule, stage: str,
             peak: Sequence[float]) -> list[dict[str, Any]]:
        self.cancelled = False
        self.batch_log = []
        rows: list[dict[str, Any]] = []
        self.emit("fit_start", stage=stage, epochs=epochs, total_steps=len(sched),
                  lrs=[float(v) for v in peak], precision=self.precision)
        last_good = self._snapshot()
        avg, n_seen, step, smooth = 0.0, 0, 0, float("nan")
        pending: list[tuple[int, torch.Tensor]] = []   # (step, loss on device) not yet read back

        def flush(epoch: int) -> None:
            # One read-back for the interval (a GPU synchronisation), then its events in order.
            nonlocal avg, n_seen, smooth
            if not pending:
                return
            losses = torch.stack([t for _, t in pending]).float().tolist()
            for (st, _), loss in zip(pending, losses):
                n_seen += 1
                avg = self.smooth_beta * avg + (1 - self.smooth_beta) * loss
                smooth = avg / (1 - self.smooth_beta ** n_seen)
                rec = {"stage": stage, "epoch": epoch, "step": st, "lr": float(sched.lrs[st - 1, -1]),
                       "loss": loss, "smooth_loss": smooth}
                self.batch_log.append(rec)
                self.emit("batch", **rec)
            pending.clear()

        for epoch in range(epochs):
            t0 = time.perf_counter()
            self.model.train()
            for xb, yb in self.dls.train:
                if self._stop_requested() or step >= len(sched):
                    break
                self._set_hypers(sched.lrs[step], sched.moms[step])
                pending.append((step + 1, self._train_step_async(xb, yb)))
                step += 1
                if len(pending) >= self.sync_every:
                    flush(epoch)
            flush(epoch)
            if self._stop_requested():
                self.cancelled = True
                self._restore(last_good)
                break
            row = {"stage": stage, "epoch": epoch, "train_loss": smooth, **self.validate(),
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            self.history.append(row)
            self.emit("epoch", **row)
            if epoch < epochs - 1:
                last_good = self._snapshot()
        self.model.train(False)
        self.emit("fit_end", stage=stage, cancelled=self.cancelled)
        return rows

    def freeze(self, train_bn: bool | None = None) -> None:
        """Train only the head (the model must offer freeze(), as engine.models.Classifier does);
        train_bn None: this Learner's. Adam's state starts afresh, as in fastai's freeze_to."""
        if not hasattr(self.model, "freeze"):
            raise TrainingError("This model has no body/head split, so it cannot be frozen.")
        self.model.freeze(self.train_bn if train_bn is None else train_bn)
        clear_state(self.opt)

    def unfreeze(self) -> None:
        """Train every layer again, with a fresh optimiser state (fastai's freeze_to)."""
        if hasattr(self.model, "unfreeze"):
            self.model.unfreeze()
            clear_state(self.opt)

    # ---------------------------------------------------------------------------------- saving

    def save(self, path: Any, **meta: Any) -> Any:
        """Save a checkpoint with the class order, preprocessing and the last epoch's metrics."""
        from engine.models import IMAGENET_MEAN, IMAGENET_STD, save_checkpoint

        last = self.history[-1] if self.history else {}
        full = {"classes": list(self.dls.classes), "size": int(getattr(self.dls, "size", 224)),
                "mean": list(getattr(self.dls, "mean", IMAGENET_MEAN)),
                "std": list(getattr(self.dls, "std", IMAGENET_STD)),
                "metrics": {k: last[k] for k in ("valid_loss", "error_rate", "accuracy") if k in last},
                "history": self.history, **meta}
        model = self.model
        if self.device.type != "cpu":
            model = copy.deepcopy(model).cpu()
        return save_checkpoint(path, model, full)


__all__ = ["TrainingError", "Learner", "LRFindResult", "Preds", "Schedule",
           "one_cycle_at", "one_cycle_schedule", "valley", "steep", "minimum", "slide", "suggest",
           "trim_for_suggestions", "SUGGESTION_RULES", "RULES", "seed_everything", "default_device",
           "accuracy", "error_rate", "amp_dtype_for", "autocast_for", "batch_to_device",
           "physical_cores", "set_cpu_threads"]
