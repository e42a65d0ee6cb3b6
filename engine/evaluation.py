"""Evaluation kept apart from training: the validation metrics and the per-item predictions the
Explorer reads, computed in eval mode without gradients."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

ToDevice = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_func: nn.Module, to_device: ToDevice,
             autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, float]:
    """valid_loss (mean over items), error_rate and accuracy of model over loader, in eval mode."""
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    for xb, yb in loader:
        xb, yb = to_device(xb, yb)
        with autocast():
            out = model(xb)
        out = out.float()
        total_loss += float(loss_func(out, yb)) * len(yb)  # batch mean -> sum
        correct += int((out.argmax(1) == yb).sum())
        n += len(yb)
    if n == 0:
        return {"valid_loss": float("nan"), "error_rate": float("nan"), "accuracy": float("nan")}
    acc = correct / n
    return {"valid_loss": total_loss / n, "error_rate": 1 - acc, "accuracy": acc}


@torch.no_grad()
def predictions(model: nn.Module, loader: Iterable, n_classes: int, to_device: ToDevice,
                autocast: Callable[[], contextlib.AbstractContextManager],
                items: Sequence[Any] | None = None) -> Preds:
    """Probabilities, targets and per-item losses over loader, in its order; items (path, label)
    give each prediction its file when they match the loader's length."""
    model.eval()
    probs, targets, losses = [], [], []
    for xb, yb in loader:
        xb, yb = to_device(xb, yb)
        with autocast():
            out = model(xb)
        out = out.float()
        probs.append(out.softmax(1).cpu())
        targets.append(yb.cpu())
        losses.append(nn.functional.cross_entropy(out, yb, reduction="none").cpu())
    p = torch.cat(probs).numpy() if probs else np.zeros((0, n_classes), np.float32)
    t = torch.cat(targets).numpy() if targets else np.zeros(0, np.int64)
    ls = torch.cat(losses).numpy() if losses else np.zeros(0, np.float32)
    paths = None
    if items is not None and len(items) == len(t):
        paths = [str(item[0]) for item in items]
    return Preds(p, t, ls, paths)


__all__ = ["Preds", "accuracy", "error_rate", "evaluate", "predictions"]
