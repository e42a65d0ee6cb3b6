"""A trained model ready to serve: loaded once (from a checkpoint, an export zip or a saved run),
with a micro-batcher that stacks requests arriving within a few milliseconds into one forward pass.

No web framework here: engine.service puts this behind HTTP. Prediction is the Explorer's own
(engine.images.load_image, then engine.models.preprocess_image, then softmax), so the same photo gets
the same probabilities whether it is predicted on the page or over HTTP.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import shlex
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.export import model_description
from engine.images import load_image
from engine.models import Checkpoint, load_checkpoint, preprocess_image

DEFAULT_MAX_BYTES = 10_000_000         # the image size cap, bytes (10 MB; a flag of the service)
MAX_ZIP_MODEL_BYTES = 4 * 1024 ** 3    # a model.safetensors inside a zip larger than this is refused
MAX_ZIP_JSON_BYTES = 1024 * 1024       # model.json is a few kB
MAX_BATCH = 32                         # most images in one forward pass unless --max-batch says
# On a CPU a batch past about 4 images of 224 px ran *slower per image* than single images
# (efficientnet_lite0: 55 ms/image alone or in fours, 105 ms/image in 32s; its activations stop
# fitting the caches), so by default a CPU batch is kept within this many pixels (bench_serve).
CPU_BATCH_PIXELS = 4 * 224 * 224


class ServeError(ValueError):
    """A model source that cannot be served, or a service that cannot take more work; a sentence."""


def default_threads() -> int:
    """Torch threads for the forward pass: the cores this process may use, less one for decoding
    and HTTP (which run beside it), at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


@dataclass
class ServeConfig:
    """How the service runs (the command line's flags)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int | None = None        # most requests in one forward pass; 1 = one per request;
                                        # None: auto_max_batch (32, fewer for large images on a CPU)
    max_wait_ms: float = 5.0            # longest a request waits for others to join its batch, ms
    max_bytes: int = DEFAULT_MAX_BYTES  # image size cap (upload body or fetched URL), bytes
    threads: int = field(default_factory=default_threads)   # torch intra-op threads
    device: str = "cpu"                 # where the forward pass runs
    fetch_timeout: float = 10.0         # wall-clock limit of /classify-url's download, s
    body_timeout: float = 30.0          # wall-clock limit for receiving an upload, s
    max_queue: int = 1024               # images waiting for the model before requests get 503
    allow_hosts: tuple[str, ...] = ()   # hosts /classify-url may fetch although private (tests)


# ------------------------------------------------------------------------------- loading a model


@dataclass
class ServedModel:
    """A loaded checkpoint and what GET /model tells about it."""

    checkpoint: Checkpoint
    description: dict[str, Any]         # engine.export.model_description: classes, arch, size, ...
    source: str                         # what was loaded: a file name or a run id, never a folder
                                        # (GET /model tells any client; a path would leak the disk)

    @property
    def classes(self) -> list[str]:
        return self.checkpoint.classes

    @property
    def size(self) -> int:
        return int(self.checkpoint.meta["size"])

    def prepare(self, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> torch.Tensor:
        """Image bytes -> (1, 3, S, S) input, exactly as the Explorer's Predict prepares a photo.
        Raises engine.images.ImageError with a sentence for anything that is not a usable image."""
        image = load_image(data, max_bytes=max_bytes)
        meta = self.checkpoint.meta
        return preprocess_image(image, self.size, meta["mean"], meta["std"])


def _load_zip(path: Path) -> ServedModel:
    """An export zip (engine.export): its model.safetensors is copied to a temporary file and
    loaded from there; model.json adds the run id and data name."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "model.safetensors" not in names:
                raise ServeError(f"{path.name} has no model.safetensors; export the model again "
                                 "from the Explorer's Export tab.")
            info = zf.getinfo("model.safetensors")
            if info.file_size > MAX_ZIP_MODEL_BYTES:
                raise ServeError(f"The model inside {path.name} declares {info.file_size / 1e9:.1f} GB, "
                                 "more than any model this app trains.")
            extra: dict[str, Any] = {}
            if "model.json" in names and zf.getinfo("model.json").file_size <= MAX_ZIP_JSON_BYTES:
                try:
                    extra = json.loads(zf.read("model.json"))
                except ValueError:
                    extra = {}   # the description is a convenience; the weights' header has it all
            with tempfile.TemporaryDirectory(prefix="dllab-serve-") as tmp:
                target = Path(tmp) / "model.safetensors"
                with zf.open(info) as src, open(target, "wb") as dst:
                    copied = 0
                    while chunk := src.read(1 << 20):
                        copied += len(chunk)
                        if copied > info.file_size:   # a lying header must not fill the disk
                            raise ServeError(f"{path.name} is damaged (its model is longer than it says).")
                        dst.write(chunk)
                ckpt = load_checkpoint(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ServeError(f"{path.name} is not a readable zip ({type(exc).__name__}).") from exc
    extra = extra if isinstance(extra, dict) else {}
    desc = model_description(ckpt.meta, run_id=str(extra.get("run_id") or ""),
                             data=str(extra.get("data") or ""))
    return ServedModel(ckpt, desc, f"{path.name} (export zip)")


def load_model_file(path: str | os.PathLike) -> ServedModel:
    """A checkpoint (model.safetensors), a folder holding one (a run folder, the CLI's --out), or
    an export zip. Raises ServeError or engine.models.CheckpointError with a sentence."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ServeError(f"There is no model at {path}; pass a model.safetensors file, a folder "
                         "holding one, or an export zip.")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    ckpt = load_checkpoint(path)
    settings = ckpt.meta.get("settings") if isinstance(ckpt.meta.get("settings"), dict) else {}
    desc = model_description(ckpt.meta, data=str(settings.get("data", "") or ""))
    return ServedModel(ckpt, desc, path.name)


def load_run_model(run_id: str) -> ServedModel:
    """A saved run of the run store (engine.runs). Raises engine.runs.RunError with a sentence."""
    from engine.runs import load_run

    run = load_run(run_id)
    ckpt = run.load_model()
    desc = model_description(ckpt.meta, run_id=run.info.id, data=run.info.data)
    return ServedModel(ckpt, desc, f"run {run.info.id}")


# ------------------------------------------------------------------------------- micro-batching


def auto_max_batch(size: int, device: str = "cpu") -> int:
    """The default largest batch: MAX_BATCH, or on a CPU as many images of size² pixels as fit in
    CPU_BATCH_PIXELS (4 at 224 px, 32 at 16 px), at least 1."""
    if device != "cpu":
        return MAX_BATCH
    return max(1, min(MAX_BATCH, CPU_BATCH_PIXELS // (size * size)))


@dataclass
class _Job:
    x: torch.Tensor                                  # (1, 3, S, S)
    future: concurrent.futures.Future


class Batcher:
    """One thread owns the model. Requests put their prepared image in a queue; the thread takes
    the first, then keeps taking until max_batch images or max_wait_ms have passed, stacks them and
    runs one forward pass under torch.inference_mode. Each request gets its own row back.

    It waits only while some request is still being decoded (`expect` counts those): a lone
    request on a quiet server is run at once instead of sitting out the wait for nobody.
    """

    def __init__(self, served: ServedModel, *, max_batch: int | None = None, max_wait_ms: float = 5.0,
                 device: str = "cpu", max_queue: int = 1024):
        if max_batch is None:
            max_batch = auto_max_batch(served.size, device)
        if max_batch < 1:
            raise ServeError("--max-batch must be at least 1.")
        if max_wait_ms < 0:
            raise ServeError("--max-wait-ms cannot be negative.")
        self.model = served.checkpoint.model.eval().to(device)
        self.device = device
        self.max_batch, self.max_wait = int(max_batch), max_wait_ms / 1000
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._decoding = 0                           # requests between expect() and submit()
        self.requests = self.batches = self.largest = 0
        self._thread = threading.Thread(target=self._loop, name="dllab-batcher", daemon=True)
        self._thread.start()

    # The request side -------------------------------------------------------------------------
    def expect(self) -> None:
        """A request has started decoding an image; the batcher may wait for it."""
        with self._lock:
            self._decoding += 1

    def unexpect(self) -> None:
        """An expected request will not submit after all (its image did not decode)."""
        with self._lock:
            self._decoding = max(0, self._decoding - 1)

    def submit(self, x: torch.Tensor, *, expected: bool = False) -> concurrent.futures.Future:
        """Queue one (1, 3, S, S) input; the future's result is its probabilities (C,) float32.
        expected: this request called expect() (it stops being waited for as it joins the queue)."""
        job = _Job(x, concurrent.futures.Future())
        with self._lock:   # one step, so the model thread never sees it both queued and awaited
            if expected:
                self._decoding = max(0, self._decoding - 1)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise ServeError("The server has too many images waiting; try again in a moment.") \
                    from None
        return job.future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued work and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "batches": self.batches, "largest_batch": self.largest,
                "mean_batch": round(self.requests / self.batches, 2) if self.batches else 0.0}

    # The model side ---------------------------------------------------------------------------
    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """first plus whatever joins within max_wait; (jobs, whether a stop was asked for)."""
        jobs, deadline = [first], time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                with self._lock:
                    waiting_for_someone = self._decoding > 0
                if left <= 0 or not waiting_for_someone:
                    break
                try:
                    job = self._queue.get(timeout=min(left, 0.001))
                except queue.Empty:
                    continue
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._collect(first)
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            try:
                probs = self.forward(torch.cat([j.x for j in jobs]))
            except Exception as exc:  # a failed forward fails its requests, never the thread
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            self.requests += len(jobs)
            self.batches += 1
            self.largest = max(self.largest, len(jobs))
            for j, p in zip(jobs, probs):
                j.future.set_result(p)

    def forward(self, x: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) -> (B, C) float32 probabilities; the same maths as models.predict_image."""
        with torch.inference_mode():
            return self.model(x.to(self.device)).float().softmax(1).cpu().numpy()


def prediction_json(classes: list[str], probs: np.ndarray, seconds: float) -> dict[str, Any]:
    """POST /predict's answer: the top class and every class's probability, highest first."""
    order = np.argsort(-probs, kind="stable")   # ties keep class order, as argmax does
    return {"prediction": classes[int(order[0])],
            "probabilities": [{"class": classes[int(i)], "p": float(probs[i])} for i in order],
            "time_ms": round(seconds * 1000, 3)}


def config_json(cfg: ServeConfig) -> dict[str, Any]:
    """The serving settings GET /model reports."""
    out = asdict(cfg)
    out["allow_hosts"] = list(cfg.allow_hosts)
    return out


# ----------------------------------------------------------------- how to start it (for pages)


def serve_command(*, run_id: str = "", model_path: str = "", port: int = 8000) -> str:
    """The shell command that serves a saved run or a model file."""
    # `--run=` keeps an id that starts with "-" (1 in 32 do) from reading as an option.
    source = f"--run={shlex.quote(run_id)}" if run_id else f"--model {shlex.quote(model_path)}"
    tail = "" if port == 8000 else f" --port {port}"
    return f"python -m engine.serve {source}{tail}"


def curl_example(port: int = 8000, photo: str = "photo.jpg") -> str:
    """A curl command that asks the service for one prediction."""
    return f"curl -F file=@{shlex.quote(photo)} http://127.0.0.1:{port}/predict"


__all__ = ["DEFAULT_MAX_BYTES", "MAX_BATCH", "CPU_BATCH_PIXELS", "ServeError", "ServeConfig",
           "ServedModel", "Batcher", "auto_max_batch", "default_threads", "load_model_file", "load_run_model", "prediction_json", "config_json",
           "serve_command", "curl_example"]
