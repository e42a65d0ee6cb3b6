"""What the app runs on: library versions (read without importing them) and the compute device."""
from __future__ import annotations

import os
from importlib import metadata

LIBRARIES = ("streamlit", "torch", "torchvision", "timm", "numpy", "pillow", "opencv-python-headless",
             "plotly", "scikit-image", "scikit-learn")


def library_versions() -> dict[str, str]:
    """Installed versions from package metadata: instant, no heavy import."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe_device() -> dict[str, str]:
    """The device training would use: CUDA GPU name, Apple MPS, or CPU with its thread count.

    Imports torch (seconds on a cold start), so pages call it off the script thread.
    """
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        mem = torch.cuda.get_device_properties(0).total_memory / 2**30
        return {"kind": "cuda", "label": f"CUDA GPU: {name} ({mem:.0f} GiB)"}
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return {"kind": "mps", "label": "Apple GPU (MPS)"}
    cores = os.cpu_count() or 1
    return {"kind": "cpu", "label": f"CPU, {torch.get_num_threads()} torch threads on {cores} cores"}


def warm_imports() -> dict[str, str]:
    """Import the heavy libraries the pages need, so the first page switch does not wait for them.

    Meant for a background thread started by the home page; returns the device description.
    """
    import cv2  # noqa: F401  (imported for its side effect: loaded once per process)
    import skimage.data  # noqa: F401

    return describe_device()
