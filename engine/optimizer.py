"""The optimiser a Learner trains with, as fastai builds it: AdamW (betas 0.9, 0.99; eps 1e-5) with
one pair of groups per layer group (with and without weight decay: fastai's wd_bn_bias=False skips
normalisation layers and every bias), the per-step rates and momentum set from a plan, and a fresh
state when the frozen part of the model changes (fastai's freeze_to clears it)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm,
              nn.GroupNorm, nn.InstanceNorm2d)


def no_decay_ids(model: nn.Module) -> set[int]:
    """ids of the parameters weight decay skips: normalisation layers' and every bias."""
    ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, NORM_TYPES):
            ids.update(id(p) for p in m.parameters(recurse=False))
        elif isinstance(getattr(m, "bias", None), nn.Parameter):
            ids.add(id(m.bias))
    return ids


def make_adamw(model: nn.Module, layer_groups: Sequence[Sequence[nn.Parameter]], wd: float,
               device: torch.device) -> torch.optim.AdamW:
    """AdamW over layer_groups (earliest first), each split into a decayed and an undecayed group
    that remember their layer group ("layer_group") and whether they decay ("decay")."""
    no_decay = no_decay_ids(model)
    groups = []
    for i, params in enumerate(layer_groups):
        for decay in (True, False):
            ps = [p for p in params if (id(p) not in no_decay) == decay]
            if ps:
                groups.append({"params": ps, "layer_group": i, "decay": decay,
                               "weight_decay": wd if decay else 0.0})
    # One fused kernel for all tensors of a group instead of a Python loop over every tensor:
    # the optimiser step of a small head was a third of its training time on the CPU.
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=wd,
                             **fused)


def set_hypers(opt: torch.optim.Optimizer, lrs: Sequence[float], mom: float | None = None) -> None:
    """Each group's rate from lrs (one per layer group, or one for all) and Adam's beta1."""
    for g in opt.param_groups:
        g["lr"] = float(lrs[g["layer_group"]] if len(lrs) > 1 else lrs[0])
        if mom is not None:
            g["betas"] = (float(mom), g["betas"][1])


def clear_state(opt: torch.optim.Optimizer) -> None:
    """Forget Adam's moving averages and step counts (they start again at the next step), as
    fastai's freeze_to does whenever the frozen part of a model changes."""
    opt.state.clear()


__all__ = ["NORM_TYPES", "no_decay_ids", "make_adamw", "set_hypers", "clear_state"]
