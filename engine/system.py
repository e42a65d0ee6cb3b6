"""What the app runs on: library versions (read without importing them) and the compute device."""
from __future__ import annotations

import functools
import os
import threading
import time
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


def release_free_memory() -> bool:
    """Hand memory the C allocator holds but no longer uses back to the system (glibc's
    malloc_trim). Python frees a closed session's objects, but glibc keeps the pages in its arenas,
    so a server's resident size stays up after a class leaves. False where there is no glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    # Looked up once: find_library runs `ldconfig -p` in a subprocess on Linux.
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):   # musl, macOS, Windows: nothing to call
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def start_memory_trimmer(period_s: float = 60.0) -> threading.Thread | None:
    """A daemon thread that calls release_free_memory() every period_s seconds; None (and no
    thread) where the allocator cannot be trimmed. Start one per server process."""
    if not release_free_memory():
        return None

    def loop() -> None:
        while True:
            time.sleep(period_s)
            release_free_memory()

    thread = threading.Thread(target=loop, name="dllab-memory-trim", daemon=True)
    thread.start()
    return thread
