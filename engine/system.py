"""What the app runs on: library versions (read without importing them) and the compute device."""
from __future__ import annotations

import functools
import gc
import os
import threading
import time
from collections.abc import Callable
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


def sweep_memory() -> bool:
    """Free what closed sessions left behind, then hand it back to the system.

    A session's page modules, their functions and its widgets form reference cycles, which only a
    full garbage collection frees. Streamlit would collect after every script run, but that cost
    half of a busy server's CPU, so the server turns it off (runner.postScriptGC) and sweeps here
    instead: once a minute is enough for memory and costs about 0.2 s of one core. Returns whether
    the allocator could also be trimmed (glibc only)."""
    gc.collect()
    return release_free_memory()


def start_memory_sweeper(period_s: float = 60.0,
                         stop: threading.Event | None = None) -> threading.Thread:
    """A daemon thread that calls sweep_memory() every period_s seconds until `stop` is set. Start
    one per server process (app.py does, with DLLAB_MEMORY_SWEEP_S or 60 s, and never stops it)."""
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.wait(period_s):
            sweep_memory()

    thread = threading.Thread(target=loop, name="dllab-memory-sweep", daemon=True)
    thread.start()
    return thread


def start_heap_probe(path: str | os.PathLike, sessions: Callable[[], int | None],
                     period_s: float = 0.5, frames: int = 1) -> threading.Thread:
    """For memory tests of a running server: trace the Python heap (tracemalloc) and append one
    JSON line {"t", "heap", "sessions", "full_gcs"} to `path` every period_s seconds; `sessions`
    counts the server's sessions (None when unknown), `full_gcs` the full collections so far.
    Tracing slows every allocation, so only a test server turns this on (app.py, DLLAB_HEAP_LOG).
    Nothing is collected here: what the server frees on its own is what a reading shows.

    To find what stays behind: create the file `<path>.ask`; the probe then writes a tracemalloc
    snapshot to `<path>.<n>.snapshot` (n = 1, 2, …; compare two with Snapshot.compare_to) and
    removes the .ask file. Tracebacks are `frames` deep (app.py: DLLAB_HEAP_FRAMES, default 1)."""
    import json
    import tracemalloc
    from pathlib import Path

    tracemalloc.start(frames)    # more frames per allocation show more of who allocated
    ask = Path(f"{path}.ask")

    def loop() -> None:
        taken = 0
        while True:
            try:
                count = sessions()
            except Exception:   # a diagnostic never takes the server down
                count = None
            line = {"t": time.time(), "heap": tracemalloc.get_traced_memory()[0], "sessions": count,
                    "full_gcs": gc.get_stats()[2]["collections"]}
            if ask.exists():
                taken += 1
                tracemalloc.take_snapshot().dump(f"{path}.{taken}.snapshot")
                line["snapshot"] = taken
                ask.unlink()
            with open(path, "a") as f:
                f.write(json.dumps(line) + "\n")
            time.sleep(period_s)

    thread = threading.Thread(target=loop, name="dllab-heap-probe", daemon=True)
    thread.start()
    return thread
