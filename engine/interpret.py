"""Reading a trained classifier's mistakes: confusion matrix, most confused pairs, per-class scores,
top losses, and Grad-CAM maps that show where in a picture the model looked.

Everything here is a pure function of arrays (or of a model and one image tensor), so the Explorer
page only draws what these return, and tests can compare them with a brute-force count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

# The Inside view's API lives in engine.inside; these two names are part of engine.interpret's.
from engine.inside import feature_maps, first_layer_kernels

if TYPE_CHECKING:
    from engine.models import Checkpoint

#: Colour maps for Grad-CAM overlays, chosen to stay readable with colour-vision deficiencies and in
#: greyscale (their lightness rises steadily). Ten stops each, as Plotly lists them.
COLORMAPS: dict[str, tuple[str, ...]] = {
    "cividis": ("#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8678", "#a59c74",
                "#c3b369", "#e1cc55", "#fee838"),
    "viridis": ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
                "#6ece58", "#b5de2b", "#fde725"),
}


class InterpretError(ValueError):
    """Inputs that cannot be interpreted as asked; the message is a sentence for the user."""


# ------------------------------------------------------------------------------ counting mistakes


def confusion_matrix(targets: Sequence[int] | np.ndarray, preds: Sequence[int] | np.ndarray,
                     n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: cm[actual, predicted] = items of class `actual` that the
    model called `predicted`. The diagonal holds the correct ones."""
    t = np.asarray(targets, dtype=np.int64).ravel()
    p = np.asarray(preds, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise InterpretError(f"targets and preds must have the same length; got {len(t)} and {len(p)}.")
    if n_classes < 1:
        raise InterpretError(f"A confusion matrix needs at least one class; got {n_classes}.")
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise InterpretError(f"Class indices must lie in 0..{n_classes - 1}.")
    # Each (actual, predicted) pair becomes one flat cell number; bincount counts them all at once.
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the share of each actual class given each prediction); rows
    without items stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def most_confused(cm: np.ndarray, classes: Sequence[str],
                  min_val: int = 1) -> list[tuple[str, str, int]]:
    """Off-diagonal cells with at least min_val items as (actual, predicted, count), largest count
    first; equal counts keep matrix order (by actual class, then predicted class)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise InterpretError("The confusion matrix must be square with one row per class.")
    cells = [(int(cm[a, p]), a, p) for a in range(len(classes)) for p in range(len(classes))
             if a != p and cm[a, p] >= min_val and cm[a, p] > 0]
    cells.sort(key=lambda c: -c[0])  # Python's sort is stable: ties stay in row-major order
    return [(str(classes[a]), str(classes[p]), n) for n, a, p in cells]


@dataclass
class ClassScores:
    """Per-class scores from a confusion matrix; NaN where a score has nothing to divide by."""

    classes: list[str]
    support: np.ndarray      # (C,) validation items whose actual class is c
    accuracy: np.ndarray     # (C,) one-vs-rest: share of ALL items correctly called "c" or "not c"
    precision: np.ndarray    # (C,) of the items predicted c, the share that really are c
    recall: np.ndarray       # (C,) of the items that really are c, the share predicted c

    def rows(self) -> list[dict[str, object]]:
        """One dict per class, for a table."""
        return [{"class": c, "images": int(n), "accuracy": float(a), "precision": float(p),
                 "recall": float(r)}
                for c, n, a, p, r in zip(self.classes, self.support, self.accuracy, self.precision,
                                         self.recall)]


def class_scores(cm: np.ndarray, classes: Sequence[str]) -> ClassScores:
    """Accuracy (one class against the rest), precision and recall for every class."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    actual = cm.sum(1)          # row totals
    predicted = cm.sum(0)       # column totals
    total = cm.sum()
    tn = total - actual - predicted + tp
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(total > 0, (tp + tn) / total, np.nan)
        prec = np.where(predicted > 0, tp / predicted, np.nan)
        rec = np.where(actual > 0, tp / actual, np.nan)
    return ClassScores([str(c) for c in classes], actual.astype(np.int64), acc, prec, rec)


def top_losses(losses: Sequence[float] | np.ndarray, k: int | None = None,
               largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of the k largest (or smallest) losses, in that order; ties keep item order.

    k=None or k larger than the number of items returns them all."""
    arr = np.asarray(losses, dtype=np.float64).ravel()
    k = len(arr) if k is None else max(0, min(int(k), len(arr)))
    # A stable sort on -loss (or +loss) keeps equal losses in their original order.
    order = np.argsort(-arr if largest else arr, kind="stable")[:k]
    return arr[order], order


def actual_probs(probs: np.ndarray, targets: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N,) the probability each item's *actual* class got: probs[i, targets[i]]."""
    p = np.asarray(probs, np.float64)
    t = np.asarray(targets, np.int64).ravel()
    if p.ndim != 2 or len(p) != len(t):
        raise InterpretError("probs must be (N, C) with one target per row.")
    return p[np.arange(len(t)), t]


def loss_from_prob(p: float | np.ndarray) -> float | np.ndarray:
    """Cross-entropy of one item from the probability of its actual class: −ln p (p = 0 → inf)."""
    with np.errstate(divide="ignore"):
        out = -np.log(np.asarray(p, np.float64))
    return float(out) if out.ndim == 0 else out


# ------------------------------------------------------------------------------------- Grad-CAM


def default_cam_layer(model: nn.Module) -> nn.Module:
    """The layer whose feature maps Grad-CAM weighs: the output of the body's last block (its last
    convolution, after batch norm and activation) for our Classifier, else the last Conv2d."""
    body = getattr(model, "body", None)
    if isinstance(body, nn.Sequential) and len(body):
        # For timm's EfficientNet the body ends in a batch norm that carries the activation; for
        # ResNet and simple_cnn in a block ending with ReLU. Either way the last child outputs the
        # final feature maps, which is what "the last conv layer" means in Grad-CAM.
        return body[-1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise InterpretError("Grad-CAM needs a convolutional layer, and this model has none.")
    return convs[-1]


def grad_cam(model: nn.Module, image_tensor: torch.Tensor, class_idx: int,
             layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for `class_idx` lies.

    image_tensor: one preprocessed image, (3, H, W) or (1, 3, H, W). Returns an (H, W) float32 map
    in [0, 1] (all zeros when no location supports the class). The feature maps of `layer` are
    weighted by the mean gradient of the class score with respect to each map, summed, passed
    through ReLU and upsampled to the image size.

    The model is left as it was: its train/eval mode is restored, hooks are removed, and no
    parameter's .grad is touched (gradients are taken with torch.autograd.grad, only with respect
    to the feature maps).
    """
    x = image_tensor if image_tensor.dim() == 4 else image_tensor.unsqueeze(0)  # (1, 3, H, W)
    if x.dim() != 4 or x.shape[0] != 1:
        raise InterpretError("grad_cam takes one image tensor of shape (3, H, W) or (1, 3, H, W).")
    layer = layer if layer is not None else default_cam_layer(model)
    store: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
        store["act"] = out
        # The rest of the model gets a copy, so an in-place ReLU after `layer` cannot overwrite
        # the maps we take the gradient of.
        return out.clone()

    was_training = model.training
    handle = layer.register_forward_hook(keep)
    model.eval()  # batch norm with running statistics, no dropout: the model as it predicts
    try:
        param = next(model.parameters(), None)
        x = x.detach().to(param.device if param is not None else "cpu")
        # Asking for the input's gradient makes the feature maps part of the graph even when every
        # parameter is frozen (requires_grad False).
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            scores = model(x)                                   # (1, C)
            if not 0 <= class_idx < scores.shape[1]:
                raise InterpretError(f"class_idx {class_idx} is outside 0..{scores.shape[1] - 1}.")
            act = store.get("act")
            if act is None or act.dim() != 4:
                raise InterpretError("The Grad-CAM layer must produce feature maps (B, C, h, w).")
            (grads,) = torch.autograd.grad(scores[0, class_idx], act)  # (1, K, h, w)
        weights = grads.mean((2, 3), keepdim=True)                       # (1, K, 1, 1)
        cam = torch.relu((weights * act.detach()).sum(1, keepdim=True))  # (1, 1, h, w)
        cam = nn.functional.interpolate(cam.float(), size=x.shape[-2:], mode="bilinear",
                                        align_corners=False)[0, 0]
    finally:
        handle.remove()
        model.train(was_training)
    cam = cam.clamp_min(0).cpu().numpy().astype(np.float32)
    top = float(cam.max()) if cam.size else 0.0
    return cam / top if top > 0 else np.zeros_like(cam)


def colorize(cam: np.ndarray, cmap: str = "cividis") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours of a colour-blind-safe map."""
    if cmap not in COLORMAPS:
        raise InterpretError(f"Unknown colour map {cmap!r}; choose one of {', '.join(COLORMAPS)}.")
    stops = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in COLORMAPS[cmap]], np.float64)
    pos = np.clip(np.nan_to_num(np.asarray(cam, np.float64)), 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return np.rint(stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5,
            cmap: str = "cividis") -> np.ndarray:
    """The photo with the coloured map blended on top; alpha 0 shows the photo only, 1 the map only.

    image: uint8 (H, W, 3); cam: (h, w) in [0, 1], resized to the image when the sizes differ."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    cam = np.asarray(cam, np.float32)
    if cam.shape != img.shape[:2]:
        cam = cv2.resize(cam, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    colours = colorize(cam, cmap).astype(np.float32)
    a = float(np.clip(alpha, 0.0, 1.0))
    return np.rint(img[..., :3].astype(np.float32) * (1 - a) + colours * a).astype(np.uint8)


CAM_SIDE = 224   # side in pixels of a Grad-CAM picture: the photo's centre square, as the model saw it


def cam_map(checkpoint: Checkpoint, image: np.ndarray, class_idx: int) -> np.ndarray:
    """Grad-CAM of class_idx for one uint8 (H, W, 3) photo, preprocessed exactly like the run's
    validation images (checkpoint.meta: size, mean, std). Returns (size, size) float32 in [0, 1]."""
    from engine.models import preprocess_image

    meta = checkpoint.meta
    x = preprocess_image(image, int(meta["size"]), meta["mean"], meta["std"])   # (1, 3, S, S)
    return grad_cam(checkpoint.model, x, class_idx)


def cam_overlay(checkpoint: Checkpoint, image: np.ndarray, class_idx: int, *, alpha: float = 0.5,
                cmap: str = "cividis", side: int = CAM_SIDE,
                cam: np.ndarray | None = None) -> np.ndarray:
    """The photo's centre square at side × side pixels with the Grad-CAM map of class_idx on top:
    uint8 (side, side, 3).

    cam: the map from cam_map, when the caller keeps it (the map costs a forward and a backward
    pass; the colours and opacity can change without recomputing it)."""
    from engine.data import resize_crop

    if cam is None:
        cam = cam_map(checkpoint, image, class_idx)
    return overlay(resize_crop(image, side), cam, alpha=alpha, cmap=cmap)


@torch.no_grad()
def predict_files(model: nn.Module, paths: Sequence[str], label: int, *, size: int,
                  mean: Sequence[float], std: Sequence[float],
                  batch_size: int = 32) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(readable paths, probs (N, C), losses (N,)) for image files that all carry class `label`,
    preprocessed like validation images; files that do not decode are left out.

    The run store keeps losses for validation images only; the cleaner uses this for the training
    images of one class at a time."""
    from engine.images import ImageError, load_image
    from engine.models import preprocess_image

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ok: list[str] = []
    probs: list[torch.Tensor] = []
    try:
        for start in range(0, len(paths), batch_size):
            xs = []
            for p in paths[start:start + batch_size]:
                try:
                    xs.append(preprocess_image(load_image(p), size, mean, std))
                except (ImageError, OSError, ValueError):
                    continue
                ok.append(str(p))
            if xs:
                probs.append(model(torch.cat(xs).to(device)).float().softmax(1).cpu())
    finally:
        model.train(was_training)
    if not probs:
        return [], np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    pr = torch.cat(probs)
    losses = -torch.log(pr[:, label].clamp_min(1e-12))  # cross-entropy of the true class
    return ok, pr.numpy(), losses.numpy()


__all__ = ["COLORMAPS", "InterpretError", "confusion_matrix", "row_normalise", "most_confused",
           "ClassScores", "class_scores", "top_losses", "actual_probs", "loss_from_prob",
           "first_layer_kernels", "feature_maps", "default_cam_layer", "grad_cam", "colorize",
           "overlay", "CAM_SIDE", "cam_map", "cam_overlay", "predict_files"]
