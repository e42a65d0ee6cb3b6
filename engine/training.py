"""Training: the Learner, the LR finder and its suggestion rules, one-cycle schedules, fine-tuning.

The maths follows fastai (the lesson's library) so that numbers a learner sees here match the
course: AdamW with betas (0.9, 0.99) and eps 1e-5, decoupled weight decay 0.01 that skips batch-norm
and bias parameters, a smoothed training loss (EMA, beta 0.98, debiased), one-cycle cosine schedules
positioned at step/total_steps, and fine_tune = one frozen epoch then discriminative rates.

Events go to `on_event(kind, **data)` (the signature of `engine.jobs.JobContext.emit`), so a page
running a Learner in a job can draw the loss curve live:
  fit_start  stage, epochs, total_steps, lrs (lr_max per layer group, earliest first)
  batch      stage, epoch, step, lr (head group), loss, smooth_loss
  epoch      stage, epoch, train_loss (smoothed, as fastai prints), valid_loss, error_rate, accuracy, seconds
  fit_end    stage, cancelled
  lr_find    step, lr, loss, smooth_loss
  precompute split, done, total (images whose body features are computed; precompute=True only)

On CUDA, losses are read back once per `sync_every` batches (one synchronisation, then the batch
events of that interval in order), so the GPU is never stalled per batch; on a CPU every batch.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from engine.models import group_lrs, predict_image

#: The four LR-finder rules, in the order fastai lists them.
SUGGESTION_RULES = ("valley", "slide", "minimum", "steep")
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm,
               nn.GroupNorm, nn.InstanceNorm2d)

EventSink = Callable[..., None]


class TrainingError(ValueError):
    """A training request that cannot run as asked; the message is a sentence for the user."""


@dataclass
class TrainConfig:
    """What one training run does; the CLI and the Train page both fill this in."""

    epochs: int = 4                  # passes over the training set (after the frozen epochs when fine-tuning)
    lr: float = 1e-3                 # peak learning rate of the one-cycle (the head's rate when fine-tuning)
    fine_tune: bool = False          # freeze_epochs on the head only, then everything with discriminative rates
    freeze_epochs: int = 1           # epochs with the body frozen (fine_tune only)
    wd: float = 0.01                 # decoupled weight decay per step, as a fraction of lr × weight
    div: float = 25.0                # one-cycle starts at lr/div
    div_final: float = 1e5           # ... and ends at lr/div_final
    pct_start: float = 0.25          # fraction of the steps spent warming up
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)  # Adam beta1 at start, peak-lr, end
    seed: int | None = 42            # seeds Python, NumPy and torch for a repeatable run; None: no seeding
    device: str | None = None        # "cuda", "mps" or "cpu"; None picks the fastest present
    precompute: bool = False         # frozen epochs on cached body features (fine_tune, no augmentation)


# ------------------------------------------------------------------------------------ utilities


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device(preferred: str | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU; `preferred` overrides (an unavailable choice is an error)."""
    if preferred:
        dev = torch.device(preferred)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise TrainingError("CUDA was asked for but no CUDA GPU is available; use device='cpu'.")
        if dev.type == "mps" and not _mps_available():
            raise TrainingError("Apple MPS was asked for but is not available; use device='cpu'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


# ------------------------------------------------------------------- device-agnostic helpers
# Small pure functions of the device, so the GPU code paths (autocast, channels_last, batch copies)
# are the same code on every device and can be exercised on a CPU in tests.


def amp_dtype_for(device: torch.device | str, *, bf16_supported: bool | None = None) -> torch.dtype | None:
    """The autocast dtype training uses on device: bf16 on CUDA (keeps float32's range, no loss
    scaling), fp16 on CUDA GPUs without bf16 (with a GradScaler), None (float32) elsewhere.

    CPU bf16 autocast is left off: on CPUs without native bf16 it is several times slower, and on
    this project's 2-core machine, which has avx512_bf16, fwd+bwd of one repeated resnet18 batch at
    64 px was 1.45x faster but whole epochs on digits 2.4x slower (2026-11-21).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16


def autocast_for(device: torch.device | str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast on device's type with dtype, or a no-op when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def batch_to_device(xb: torch.Tensor, yb: torch.Tensor, device: torch.device | str, *,
                    channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a batch to device; non-blocking from pinned memory on CUDA (the copy overlaps the
    previous step), and image batches (B, C, H, W) in channels_last when asked."""
    device = torch.device(device)
    nb = device.type == "cuda"
    xb, yb = xb.to(device, non_blocking=nb), yb.to(device, non_blocking=nb)
    if channels_last and xb.ndim == 4:
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, yb


def physical_cores() -> int:
    """CPU cores this process may run on, counting each physical core once (no SMT siblings)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    seen = set()
    for cpu in allowed:
        try:
            sib = open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read().strip()
        except OSError:
            sib = str(cpu)
        seen.add(sib)
    return max(1, len(seen))


def set_cpu_threads(n: int | None = None, *, workers: int = 0) -> int:
    """Set torch's intra-op threads to n, or to the physical cores minus loader worker processes
    (more threads than cores only makes them wait on each other); returns the count set."""
    n = n if n is not None else max(1, physical_cores() - max(0, int(workers)))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _cos(start: float | np.ndarray, end: float | np.ndarray, pos: float) -> Any:
    """Cosine from start (pos 0) to end (pos 1)."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


# ---------------------------------------------------------------------------------- one-cycle


@dataclass
class Schedule:
    """Per-step hyper-parameters: lrs (total_steps, n_groups) and moms (total_steps,), Adam's beta1."""

    lrs: np.ndarray
    moms: np.ndarray

    def __len__(self) -> int:
        return len(self.moms)


def one_cycle_at(pos: float, lr_max: np.ndarray, *, div: float = 25.0, div_final: float = 1e5,
                 pct_start: float = 0.25,
                 moms: Sequence[float] = (0.95, 0.85, 0.95)) -> tuple[np.ndarray, float]:
    """(lrs, mom) at training position pos in [0, 1): two cosines meeting at pct_start."""
    lr_max = np.asarray(lr_max, dtype=np.float64)
    if pos < pct_start:
        p = pos / pct_start
        return _cos(lr_max / div, lr_max, p), _cos(moms[0], moms[1], p)
    p = (pos - pct_start) / (1 - pct_start)
    return _cos(lr_max, lr_max / div_final, p), _cos(moms[1], moms[2], p)


def one_cycle_schedule(total_steps: int, lr_max: float | slice, *, div: float = 25.0,
                       div_final: float = 1e5, pct_start: float = 0.25,
                       moms: Sequence[float] = (0.95, 0.85, 0.95), n_groups: int = 1) -> Schedule:
    """The learning rate (per layer group) and momentum for every step of a one-cycle run.

    Step i sits at position i/total_steps, as in fastai: the first step uses lr_max/div, the step at
    pct_start uses lr_max, and the rate approaches lr_max/div_final at the end. lr_max may be a
    slice, spread over n_groups as `engine.models.group_lrs` does. The trainer applies exactly these.
    """
    if total_steps < 1:
        raise TrainingError("A one-cycle run needs at least one step; add data or epochs.")
    if not 0 <= pct_start <= 1:
        raise TrainingError(f"pct_start must be between 0 and 1; got {pct_start}.")
    peak = np.asarray(group_lrs(lr_max, n_groups), dtype=np.float64)
    lrs = np.empty((total_steps, len(peak)))
    ms = np.empty(total_steps)
    for i in range(total_steps):
        lrs[i], ms[i] = one_cycle_at(i / total_steps, peak, div=div, div_final=div_final,
                                     pct_start=pct_start, moms=moms)
    return Schedule(lrs, ms)


# ------------------------------------------------------------------------ LR-finder suggestions
# Pure functions of the trimmed (lrs, losses) arrays; each returns a learning rate. They compute in
# the arrays' own dtype so that float32 inputs give fastai's float32 answers bit for bit.


def _arrays(lrs: Any, losses: Any) -> tuple[np.ndarray, np.ndarray]:
    lrs = np.asarray(lrs.detach().cpu() if isinstance(lrs, torch.Tensor) else lrs)
    losses = np.asarray(losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses)
    if lrs.ndim != 1 or lrs.shape != losses.shape:
        raise ValueError("lrs and losses must be 1-D arrays of the same length.")
    if len(lrs) < 2:
        raise ValueError("An LR suggestion needs at least two recorded points; run the finder longer.")
    return lrs, losses


def valley(lrs: Any, losses: Any) -> float:
    """The longest stretch where the loss keeps falling; a third and a half-third into it."""
    lrs, losses = _arrays(lrs, losses)
    n = len(losses)
    # Longest decreasing subsequence ending at each i (quadratic, as fastai; n is about 85).
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            # fastai updates the best run inside the inner loop; kept so answers match exactly.
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def steep(lrs: Any, losses: Any) -> float:
    """The lr where the loss falls fastest per unit of log(lr)."""
    lrs, losses = _arrays(lrs, losses)
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[int(np.argmin(grads))])


def minimum(lrs: Any, losses: Any) -> float:
    """A tenth of the lr at the lowest loss (the minimum itself is already too high to train at)."""
    lrs, losses = _arrays(lrs, losses)
    return float(lrs[int(np.argmin(losses))]) / 10


def slide(lrs: Any, losses: Any, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> float:
    """Slide a window of lr_diff points leftwards from the end until the loss gradient at its two
    ends differs by at most thresh; suggest the window's left lr (× adjust_value)."""
    lrs, losses = _arrays(lrs, losses)
    if len(losses) <= lr_diff:
        raise ValueError(f"The slide rule needs more than {lr_diff} points; got {len(losses)}.")
    grad = np.gradient(losses)
    r_idx, l_idx = -1, -1 - lr_diff
    local_min_lr = lrs[l_idx]
    while l_idx >= -len(losses) and abs(grad[r_idx] - grad[l_idx]) > thresh:
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


RULES: dict[str, Callable[..., float]] = {"valley": valley, "slide": slide, "minimum": minimum,
                                           "steep": steep}


def trim_for_suggestions(lrs: Sequence[float], losses: Sequence[float],
                         num_it: int) -> tuple[np.ndarray, np.ndarray]:
    """fastai's preparation: drop the first num_it//10 and last 5 points, cut at the first NaN."""
    lrs_a = np.asarray(list(lrs)[num_it // 10:-5], dtype=np.float32)
    losses_a = np.asarray(list(losses)[num_it // 10:-5], dtype=np.float32)
    nan = np.flatnonzero(np.isnan(losses_a))
    if len(nan):
        lrs_a, losses_a = lrs_a[:nan[0]], losses_a[:nan[0]]
    return lrs_a, losses_a


def suggest(lrs: Sequence[float], losses: Sequence[float], num_it: int,
            rules: Iterable[str] = SUGGESTION_RULES) -> dict[str, float | None]:
    """Each rule's learning rate for a recorded LR-finder curve; None where too few points remain."""
    t_lrs, t_losses = trim_for_suggestions(lrs, losses, num_it)
    out: dict[str, float | None] = {}
    for name in rules:
        if name not in RULES:
            raise ValueError(f"Unknown suggestion rule {name!r}; choose from {', '.join(RULES)}.")
        try:
            out[name] = RULES[name](t_lrs, t_losses)
        except (ValueError, IndexError):
            out[name] = None
    return out


@dataclass
class LRFindResult:
    """What the LR finder recorded (every point) and what each rule suggests."""

    lrs: list[float]                 # learning rate used at each step
    losses: list[float]              # smoothed loss after each step (what is plotted)
    raw_losses: list[float]          # the batch losses themselves
    suggestions: dict[str, float | None]
    num_it: int
    stopped_early: bool              # True when the loss diverged (or cancel) before num_it steps

    def point(self, lr: float) -> float:
        """The smoothed loss at lr on the plotted curve (log-lr interpolation), for a marker."""
        return float(np.interp(math.log(lr), np.log(self.lrs), self.losses))


# ---------------------------------------------------------------------------------- the Learner


@dataclass
class Preds:
    """Validation-set predictions in the validation loader's order (what the Explorer needs)."""

    probs: np.ndarray                # (N, C) softmax probabilities
    targets: np.ndarray              # (N,) true class index
    losses: np.ndarray               # (N,) cross-entropy of each item
    paths: list[str] | None = None   # (N,) file of each item, when the data came from files

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.targets).mean()) if len(self.targets) else float("nan")


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of items whose highest score is the true class."""
    return (logits.argmax(1) == targets).float().mean()


def error_rate(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 − accuracy."""
    return 1 - accuracy(logits, targets)


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
                 sync_every: int | None = None):
        """mixed_precision: None = on for CUDA only (True forces bf16 autocast on any device, e.g. to
        test the GPU path on a CPU); channels_last: None = on for CUDA and CPU; sync_every: batches
        per loss read-back (None: 1 on a CPU, where reading costs nothing, 20 on a GPU)."""
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
        if mixed_precision is None:
            mixed_precision = cuda
        if mixed_precision:
            # On CUDA: bf16 where the GPU has it, else fp16; any other device: bf16 autocast.
            self.amp_dtype = amp_dtype_for(self.device) if cuda else torch.bfloat16
        else:
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.sync_every = max(1, int(sync_every)) if sync_every else (20 if cuda else 1)
        if cuda:
            # Fixed image sizes: let cuDNN time its algorithms once and keep the fastest.
            torch.backends.cudnn.benchmark = True
        elif self.device.type == "cpu" and torch.get_num_threads() > physical_cores():
            set_cpu_threads()   # more threads than cores only makes them wait on each other
        self._features: Any = None   # engine.precompute.FeatureCache of the last precompute
        self.opt = self._make_optimizer()

    # ------------------------------------------------------------------ optimiser and schedules

    @property
    def n_groups(self) -> int:
        return len(self._layer_groups())

    def _layer_groups(self) -> list[list[nn.Parameter]]:
        if hasattr(self.model, "param_groups"):
            return self.model.param_groups()
        return [list(self.model.parameters())]

    def _no_decay_ids(self) -> set[int]:
        # fastai's wd_bn_bias=False: no weight decay on normalisation layers or on any bias.
        ids: set[int] = set()
        for m in self.model.modules():
            if isinstance(m, _NORM_TYPES):
                ids.update(id(p) for p in m.parameters(recurse=False))
            elif isinstance(getattr(m, "bias", None), nn.Parameter):
                ids.add(id(m.bias))
        return ids

    def _make_optimizer(self) -> torch.optim.AdamW:
        no_decay = self._no_decay_ids()
        groups = []
        for i, params in enumerate(self._layer_groups()):
            for decay in (True, False):
                ps = [p for p in params if (id(p) not in no_decay) == decay]
                if ps:
                    groups.append({"params": ps, "layer_group": i, "decay": decay,
                                   "weight_decay": self.wd if decay else 0.0})
        # One fused kernel for all tensors of a group instead of a Python loop over every tensor:
        # the optimiser step of a small head was a third of its training time on the CPU.
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=self.wd,
                                 **fused)

    def _set_hypers(self, lrs: Sequence[float], mom: float | None = None) -> None:
        for g in self.opt.param_groups:
            g["lr"] = float(lrs[g["layer_group"]] if len(lrs) > 1 else lrs[0])
            if mom is not None:
                g["betas"] = (float(mom), g["betas"][1])

    # ------------------------------------------------------------------------------- plumbing

    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, **data)

    def _stop_requested(self) -> bool:
        s = self._should_stop
        if s is None:
            return False
        if hasattr(s, "is_set"):
            return bool(s.is_set())
        return bool(s())

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.device, self.amp_dtype)

    def _to_device(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_to_device(xb, yb, self.device, channels_last=self.channels_last)

    def _train_step_async(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One optimiser step on one batch; returns the batch loss as a detached device tensor
        (reading it back to Python would wait for the GPU to finish the step)."""
        xb, yb = self._to_device(xb, yb)
        with self._autocast():
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

    # ------------------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def validate(self, loader: Iterable | None = None) -> dict[str, float]:
        """valid_loss, error_rate and accuracy over the validation loader (no augmentation)."""
        loader = self.dls.valid if loader is None else loader
        self.model.eval()
        total_loss, correct, n = 0.0, 0, 0
        for xb, yb in loader:
            xb, yb = self._to_device(xb, yb)
            with self._autocast():
                out = self.model(xb)
            out = out.float()
            total_loss += float(self.loss_func(out, yb)) * len(yb)  # batch mean -> sum
            correct += int((out.argmax(1) == yb).sum())
            n += len(yb)
        if n == 0:
            return {"valid_loss": float("nan"), "error_rate": float("nan"), "accuracy": float("nan")}
        acc = correct / n
        return {"valid_loss": total_loss / n, "error_rate": 1 - acc, "accuracy": acc}

    @torch.no_grad()
    def get_preds(self, loader: Iterable | None = None) -> Preds:
        """Probabilities, targets and per-item losses on the validation set, in its order."""
        use_valid = loader is None
        loader = self.dls.valid if loader is None else loader
        self.model.eval()
        probs, targets, losses = [], [], []
        for xb, yb in loader:
            xb, yb = self._to_device(xb, yb)
            with self._autocast():
                out = self.model(xb)
            out = out.float()
            probs.append(out.softmax(1).cpu())
            targets.append(yb.cpu())
            losses.append(nn.functional.cross_entropy(out, yb, reduction="none").cpu())
        n_cls = len(getattr(self.dls, "classes", [])) or 0
        p = torch.cat(probs).numpy() if probs else np.zeros((0, n_cls), np.float32)
        t = torch.cat(targets).numpy() if targets else np.zeros(0, np.int64)
        ls = torch.cat(losses).numpy() if losses else np.zeros(0, np.float32)
        paths = None
        items = getattr(self.dls, "valid_items", None) if use_valid else None
        if items is not None and len(items) == len(t):
            paths = [str(item[0]) for item in items]
        return Preds(p, t, ls, paths)

    def predict(self, image: np.ndarray, device: str = "cpu") -> tuple[str, int, np.ndarray]:
        """(class, index, probabilities) for one uint8 H×W×3 image, preprocessed like validation."""
        from engine.models import IMAGENET_MEAN, IMAGENET_STD

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

        precompute=True (frozen body, no augmentation): on cached body features (engine.precompute).
        """
        if precompute:
            from engine.precompute import on_features
            with on_features(self):
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
                    self._emit("lr_find", step=step, lr=lr, loss=loss, smooth_loss=smooth)
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
                      moms: Sequence[float] = (0.95, 0.85, 0.95), wd: float | None = None,
                      stage: str = "train", precompute: bool = False) -> list[dict[str, Any]]:
        """Train for `epochs` with a one-cycle schedule; returns this fit's epoch rows.

        If a stop is requested, the model and optimiser go back to the end of the last finished
        epoch (or to the start), so what is kept always matches a row of the table.
        precompute=True (frozen body, no augmentation; else TrainingError with the reason): the body's
        features are computed once and only the head is trained on them: the same model as the long
        way, many times faster (engine.precompute).
        """
        if epochs < 1:
            raise TrainingError("Train for at least one epoch.")
        n_batches = len(self.dls.train)
        if n_batches == 0:
            raise TrainingError("The training set is empty; add images or lower the batch size.")
        if wd is not None:
            for g in self.opt.param_groups:
                g["weight_decay"] = wd if g["decay"] else 0.0
        sched = one_cycle_schedule(epochs * n_batches, lr_max, div=div, div_final=div_final,
                                   pct_start=pct_start, moms=moms, n_groups=self.n_groups)
        peak = group_lrs(lr_max, self.n_groups)
        if precompute:
            from engine.precompute import on_features
            with on_features(self):
                rows = self._fit(epochs, sched, stage, peak)
            self.model.train(False)
            return rows
        return self._fit(epochs, sched, stage, peak)

    def _fit(self, epochs: int, sched: Schedule, stage: str,
             peak: Sequence[float]) -> list[dict[str, Any]]:
        self.cancelled = False
        self.batch_log = []
        rows: list[dict[str, Any]] = []
        self._emit("fit_start", stage=stage, epochs=epochs, total_steps=len(sched),
                   lrs=[float(v) for v in peak])
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
                self._emit("batch", **rec)
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
            self._emit("epoch", **row)
            if epoch < epochs - 1:
                last_good = self._snapshot()
        self.model.train(False)
        self._emit("fit_end", stage=stage, cancelled=self.cancelled)
        return rows

    def freeze(self) -> None:
        """Train only the head (the model must offer freeze(), as engine.models.Classifier does)."""
        if not hasattr(self.model, "freeze"):
            raise TrainingError("This model has no body/head split, so it cannot be frozen.")
        self.model.freeze()

    def unfreeze(self) -> None:
        """Train every layer again."""
        if hasattr(self.model, "unfreeze"):
            self.model.unfreeze()

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1,
                  lr_mult: float = 100, pct_start: float = 0.3, div: float = 5.0,
                  precompute: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
        """fastai's fine_tune: head only for freeze_epochs (one-cycle, pct_start 0.99), then every
        layer for epochs with slice(base_lr/2/lr_mult, base_lr/2), pct_start 0.3, div 5.
        precompute=True runs the frozen epochs on cached body features."""
        rows: list[dict[str, Any]] = []
        if freeze_epochs > 0:
            self.freeze()
            rows += self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99,
                                       stage="frozen", precompute=precompute, **kwargs)
            if self.cancelled:
                return rows
        base_lr /= 2
        self.unfreeze()
        rows += self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start,
                                   div=div, stage="unfrozen", **kwargs)
        return rows

    def fit_config(self, cfg: TrainConfig) -> list[dict[str, Any]]:
        """Run what a TrainConfig describes (fine_tune or fit_one_cycle)."""
        kw = {"div_final": cfg.div_final, "moms": cfg.moms, "wd": cfg.wd}
        if cfg.fine_tune:
            return self.fine_tune(cfg.epochs, base_lr=cfg.lr, freeze_epochs=cfg.freeze_epochs,
                                  precompute=cfg.precompute, **kw)
        return self.fit_one_cycle(cfg.epochs, cfg.lr, div=cfg.div, pct_start=cfg.pct_start, **kw)

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


__all__ = ["TrainConfig", "TrainingError", "Learner", "LRFindResult", "Preds", "Schedule",
           "one_cycle_at", "one_cycle_schedule", "valley", "steep", "minimum", "slide", "suggest",
           "trim_for_suggestions", "SUGGESTION_RULES", "RULES", "seed_everything", "default_device",
           "accuracy", "error_rate", "amp_dtype_for", "autocast_for", "batch_to_device",
           "physical_cores", "set_cpu_threads"]
