"""Devices: which one to train on, and small pure functions of the device (autocast, channels_last,
batch copies, CPU threads), so the GPU code paths are the same code on every device and can be
exercised on a CPU in tests. Also seeding, which every device needs for a repeatable run.
"""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from engine.errors import TrainingError


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


#: What an autocast dtype is called in settings, events and saved runs.
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def training_dtype(device: torch.device | str, precision: str | None = "auto", *,
                   mixed_precision: bool | None = None) -> torch.dtype | None:
    """The autocast dtype a Learner computes in (None: float32).

    precision "auto" (or None) follows mixed_precision, the older switch: None = on for CUDA only
    (amp_dtype_for), True = on for any device (bf16 off CUDA, e.g. to test the GPU path on a CPU),
    False = off. "fp32", "bf16" and "fp16" force that dtype on any device.
    """
    device = torch.device(device)
    if precision in (None, "auto"):
        on = device.type == "cuda" if mixed_precision is None else mixed_precision
        if not on:
            return None
        return amp_dtype_for(device) if device.type == "cuda" else torch.bfloat16
    forced = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in forced:
        raise TrainingError(f"Unknown precision {precision!r}; choose one of auto, "
                            f"{', '.join(forced)}.")
    return forced[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    """"fp32", "bf16" or "fp16" for an autocast dtype."""
    return PRECISION_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def repeatability_note(device: torch.device | str) -> str | None:
    """Why a seeded run on device is not bit-repeatable, as a sentence; None when it is."""
    if torch.device(device).type == "cuda" and torch.backends.cudnn.benchmark:
        return ("Seeded, but not bit-repeatable: cuDNN benchmarking picks the fastest convolution "
                "algorithm by timing, and algorithms round differently, so a rerun with the same "
                "seed gives slightly different numbers.")
    return None


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



__all__ = ["seed_everything", "default_device", "amp_dtype_for", "PRECISION_NAMES", "training_dtype",
           "precision_name", "repeatability_note", "autocast_for", "batch_to_device",
           "physical_cores", "set_cpu_threads"]
