"""Precompute (the lesson's `precompute=True`): while the body is frozen and augmentation is off, the
body turns each image into the same features in every epoch, so compute them once and train the head
(and run the LR finder) on the cached features. Seconds on a CPU instead of minutes.

The head keeps its own modules and parameters (the Learner's optimiser already holds them), so what
is trained on features *is* the full model's head: nothing is copied back. Batches come from loaders
that mirror the image loaders (same batch size, drop_last, shuffle, and the same random generator
object), so on a CPU the head sees the very batches, in the same order, that the long path would give.

A mode the Learner is given: `learn.freeze(); learn.fit_one_cycle(3, 1e-2, precompute=True)`,
`learn.lr_find(precompute=True)`, `learn.fine_tune(4, precompute=True)` (its frozen epochs). Cached
features need a body that is the same in every epoch, batch norm included, so in this mode the body
is frozen with train_bn=False (its batch-norm statistics and weights fixed, the body in eval mode);
the long way with fastai's default train_bn=True adapts them to the data and is a slightly
different model (BN_NOTE). The Learner calls `compute_features` and switches itself to `HeadOnly`
and `feature_loaders` for the block; this module only reads the Learner's public parts (model,
dls, device, to_device, autocast, emit) and never imports engine.training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from engine.errors import TrainingError


class FeatureDataset(torch.utils.data.Dataset):
    """Cached features (N, F) with labels (N,); fetches whole batches at once (`__getitems__`)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features = features      # (N, F) on the Learner's device
        self.labels = labels          # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[i], self.labels[i]

    def __getitems__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.as_tensor(idx, device=self.labels.device)
        return self.features[ix], self.labels[ix]


def _batch_as_is(batch: Any) -> Any:
    return batch    # __getitems__ already returns a stacked (x, y) batch


@dataclass
class FeatureCache:
    """Body features of every training and validation item, and the head part trained on them."""

    train: FeatureDataset         # training items in dataset order, never augmented
    valid: FeatureDataset
    head: nn.Module               # the head's modules after the folded ones (same objects as model.head)
    n_folded: int                 # leading parameter-free head modules (pooling) applied before caching
    key: tuple                    # what the features depend on; a change means compute them again
    seconds: float                # time spent computing them

    @property
    def n_features(self) -> int:
        return int(self.train.features.shape[1]) if self.train.features.ndim > 1 else 1


@dataclass
class FeatureLoaders:
    """What a Learner needs from dls, over cached features: .train, .valid, .classes (+ extras)."""

    train: DataLoader
    valid: DataLoader
    classes: list
    valid_items: Any = None
    size: int = 224
    mean: Any = None
    std: Any = None


# ------------------------------------------------------------------------------------- checks


#: What precompute changes besides speed when the body was frozen with train_bn (a note event).
BN_NOTE = ("Precompute froze the body's batch-norm layers too (train_bn off): their statistics and "
           "weights stay as pretrained, where the long way would adapt them to this data, as fastai "
           "does, so the two runs differ slightly.")


def _is_augmented(dls: Any) -> bool:
    cfg = getattr(dls, "cfg", None)
    return bool(getattr(cfg, "augment", False))


def why_not(learner: Any, *, refreeze_bn: bool = False) -> str | None:
    """None when precompute gives the same model as the long path; otherwise the reason, as a
    sentence for the user. refreeze_bn: the caller will freeze the body's batch norm too (the
    Learner's precompute mode does), so a body frozen with train_bn is no reason."""
    model, dls = learner.model, learner.dls
    if not (hasattr(model, "body") and hasattr(model, "head")):
        return "This model has no body/head split, so there are no body features to precompute."
    if not getattr(model, "frozen", False):
        return "Precompute needs a frozen body (freeze it, or use fine_tune's frozen epochs)."
    if getattr(model, "train_bn", False) and not refreeze_bn:
        return ("Precompute needs the body's batch-norm layers frozen too (freeze with "
                "train_bn=False): their statistics would move with every batch, so the features "
                "would differ from epoch to epoch.")
    if _is_augmented(dls):
        return ("Precompute needs augmentation off: with it the body sees a different version of "
                "each image every epoch. Turn augmentation off, or train the long way.")
    for name in ("train", "valid"):
        loader = getattr(dls, name, None)
        ds = getattr(loader, "dataset", None)
        if not isinstance(loader, DataLoader) or not hasattr(ds, "__len__") \
                or not hasattr(ds, "__getitem__"):
            return "Precompute needs torch DataLoaders over indexable data sets."
    return None


def check(learner: Any) -> None:
    """Raise TrainingError with the reason when precompute cannot be used."""
    reason = why_not(learner)
    if reason is not None:
        raise TrainingError(reason)


# ----------------------------------------------------------------------------------- features


def _n_folded(head: nn.Module) -> int:
    """How many leading head modules are fixed functions (no parameters, no buffers, no dropout):
    they are applied once before caching, so the cache holds pooled vectors, not feature maps."""
    if not isinstance(head, nn.Sequential):
        return 0
    k = 0
    for m in head:
        has_state = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        if has_state or isinstance(m, nn.modules.dropout._DropoutNd) or \
                any(isinstance(s, nn.modules.dropout._DropoutNd) for s in m.modules()):
            break
        k += 1
    return k


def cache_key(learner: Any) -> tuple:
    """What the features depend on: the body's weights, the data and the device settings."""
    # A tensor's _version counts its in-place changes (optimiser steps, load_state_dict), so the
    # key changes whenever the body's weights or statistics do, at no cost.
    body = learner.model.body
    state = tuple((t.data_ptr(), t._version) for t in (*body.parameters(), *body.buffers()))
    dls = learner.dls
    return (id(learner.model), id(dls.train.dataset), len(dls.train.dataset), id(dls.valid.dataset),
            len(dls.valid.dataset), str(learner.device), learner.amp_dtype, learner.channels_last,
            state)


@torch.no_grad()
def _compute(learner: Any, loader: DataLoader, pre: nn.Module, split: str
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of loader.dataset's items in dataset order, in batches of loader.batch_size.

    Items are fetched directly (not by iterating the loader), so no random number is drawn: the
    head's dropout and the shuffle order then match the long path exactly.
    """
    ds, collate = loader.dataset, loader.collate_fn
    n, bs = len(ds), loader.batch_size or 64
    body = learner.model.body
    feats, labels = [], []
    for start in range(0, n, bs):
        xb, yb = collate([ds[j] for j in range(start, min(n, start + bs))])
        xb, yb = learner.to_device(xb, yb)
        with learner.autocast():
            f = pre(body(xb))                                  # (B, F) e.g. concat-pooled
        feats.append(f.reshape(f.shape[0], -1) if f.ndim > 2 else f)
        labels.append(yb)
        learner.emit("precompute", split=split, done=min(n, start + bs), total=n)
    if not feats:
        return torch.zeros(0, 0, device=learner.device), torch.zeros(0, dtype=torch.int64,
                                                                       device=learner.device)
    return torch.cat(feats), torch.cat(labels)


def compute_features(learner: Any, key: tuple) -> FeatureCache:
    """The body's features for every training and validation item, in eval mode (the Learner
    keeps the result and decides when to compute again)."""
    model = learner.model
    k = _n_folded(model.head)
    pre = nn.Sequential(*list(model.head)[:k]) if k else nn.Identity()
    rest = nn.Sequential(*list(model.head)[k:]) if isinstance(model.head, nn.Sequential) else model.head
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        xt, yt = _compute(learner, learner.dls.train, pre, "train")
        xv, yv = _compute(learner, learner.dls.valid, pre, "valid")
    finally:
        model.train(was_training)
    return FeatureCache(FeatureDataset(xt, yt), FeatureDataset(xv, yv), rest, k, key,
                        time.perf_counter() - t0)


def precompute_features(learner: Any, *, force: bool = False) -> FeatureCache:
    """The Learner's body features, computed now or reused (see Learner.precompute_features)."""
    return learner.precompute_features(force=force)


def feature_loaders(dls: Any, cache: FeatureCache) -> FeatureLoaders:
    """Loaders over the cached features that mirror the image loaders dls: batch size, drop_last,
    shuffling and the very same random generator object (so the order is the one the image loader
    would have drawn, and the generator ends where it would have)."""
    out = []
    for loader, ds in ((dls.train, cache.train), (dls.valid, cache.valid)):
        out.append(DataLoader(ds, batch_size=loader.batch_size, drop_last=loader.drop_last,
                              shuffle=isinstance(loader.sampler, RandomSampler),
                              generator=loader.generator, collate_fn=_batch_as_is, num_workers=0))
    return FeatureLoaders(out[0], out[1], list(dls.classes),
                          valid_items=getattr(dls, "valid_items", None),
                          size=getattr(dls, "size", 224), mean=getattr(dls, "mean", None),
                          std=getattr(dls, "std", None))


class HeadOnly(nn.Module):
    """The trainable head part as a model; its state_dict keys are those of the full head."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, F) -> (B, n_classes)
        return self.head(x)


__all__ = ["BN_NOTE", "FeatureCache", "FeatureDataset", "FeatureLoaders", "HeadOnly", "why_not",
           "check", "cache_key", "compute_features", "precompute_features", "feature_loaders"]
