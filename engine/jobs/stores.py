"""Where a run's job opens the model it continues from and saves the run it trained.

In-process (LocalRunStore) both go straight to the run store on this machine (engine.runs). A Ray
worker may be on another machine, so it uses a ShippingRunStore: the model to continue arrives as
checkpoint bytes with the job, and the trained run leaves as a RunPayload — weights as safetensors
bytes, the validation predictions, history and settings — that the server saves with
`save_shipped`, writing exactly the files an in-process run writes (engine.runs.save_run).
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np


class RunStore(Protocol):
    """What the LR finder and training need from the run store."""

    def open_model(self, run_id: str) -> Any:
        """The saved run's model as an engine.models.Checkpoint (to continue training it)."""

    def save(self, learner: Any, *, owner: str, data_name: str, settings: dict, history: dict,
             status: str) -> Any:
        """Save the trained learner as a run; returns its engine.runs.RunInfo."""


class LocalRunStore:
    """The run store on this machine (the in-process backend)."""

    def open_model(self, run_id: str) -> Any:
        from engine.runs import load_run
        return load_run(run_id).load_model()

    def save(self, learner: Any, **fields: Any) -> Any:
        from engine.runs import save_run
        return save_run(learner, **fields)


@dataclass
class RunPayload:
    """A trained run on its way from a worker to the server (small and typed: bytes, arrays,
    plain dicts)."""

    weights: bytes                    # the model's state dict as safetensors
    arch: str
    classes: list[str]
    size: int
    mean: list[float]
    std: list[float]
    epochs: list[dict]                # the Learner's history: one row per finished epoch
    probs: np.ndarray                 # (N, C) float32 validation probabilities
    targets: np.ndarray               # (N,) int64
    losses: np.ndarray                # (N,) float32
    items: list[tuple[str, int]]      # (N,) validation files relative to the data folder, labels
    folder: str                       # the data folder on the server
    owner: str
    data_name: str
    settings: dict
    history: dict
    status: str                       # "done" | "cancelled"
    host: str = field(default_factory=socket.gethostname)   # where it trained
    pid: int = field(default_factory=os.getpid)


class ShippingRunStore:
    """The run store of a Ray worker: the model to continue came with the job (checkpoint bytes);
    a saved run is kept as `payload` for the server to write."""

    def __init__(self, server_folder: str, local_folder: str, start_model: bytes | None = None):
        self.server_folder = server_folder     # the data folder as the server names it
        self.local_folder = local_folder       # ... and where this worker unpacked it
        self.start_model = start_model
        self.payload: RunPayload | None = None

    def open_model(self, run_id: str) -> Any:
        from engine.models import CheckpointError, load_checkpoint
        from engine.runs import RunError

        if self.start_model is None:
            raise RunError(f"The model of run {run_id} did not reach the Ray worker; start again.")
        with tempfile.TemporaryDirectory(prefix="dllab-start-") as tmp:
            path = Path(tmp) / "model.safetensors"
            path.write_bytes(self.start_model)
            try:
                return load_checkpoint(path)
            except CheckpointError as exc:
                raise RunError(f"The model of run {run_id} could not be opened: {exc}") from exc

    def save(self, learner: Any, *, owner: str, data_name: str, settings: dict, history: dict,
             status: str) -> Any:
        """Keep everything save_run would write, as a payload; returns a provisional RunInfo (the
        server gives the run its id and metrics when it saves it)."""
        from safetensors.torch import save as safetensors_bytes

        from engine.runs import RunInfo

        preds = learner.get_preds()
        root = Path(self.local_folder)
        items = [(_relative(p, root), int(y)) for p, y in getattr(learner.dls, "valid_items", [])]
        state = {k: v.detach().to("cpu").contiguous() for k, v in learner.model.state_dict().items()}
        self.payload = RunPayload(
            weights=safetensors_bytes(state), arch=str(learner.model.arch),
            classes=[str(c) for c in learner.dls.classes], size=int(learner.dls.size),
            mean=[float(v) for v in learner.dls.mean], std=[float(v) for v in learner.dls.std],
            epochs=list(learner.history), probs=np.asarray(preds.probs, np.float32),
            targets=np.asarray(preds.targets, np.int64), losses=np.asarray(preds.losses, np.float32),
            items=items, folder=self.server_folder, owner=owner, data_name=data_name,
            settings={**settings, "folder": self.server_folder}, history=history, status=status)
        return RunInfo(id="", owner=owner, created=time.time(), status=status,
                       arch=self.payload.arch, data=data_name, classes=self.payload.classes,
                       metrics={}, epochs=len(self.payload.epochs))


def _relative(path: Any, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


class ShippedLearner:
    """A trained run rebuilt on the server from its payload, with the parts of a Learner that
    engine.runs.save_run reads (model, dls, history, device, get_preds, save)."""

    def __init__(self, payload: RunPayload):
        import torch
        from safetensors.torch import load as safetensors_load

        from engine.models import create_model

        self.payload = payload
        self.model = create_model(payload.arch, len(payload.classes), pretrained=False)
        self.model.load_state_dict(safetensors_load(payload.weights), strict=True)
        self.dls = SimpleNamespace(
            classes=list(payload.classes), size=payload.size, mean=tuple(payload.mean),
            std=tuple(payload.std),
            valid_items=[(Path(payload.folder) / rel, y) for rel, y in payload.items])
        self.history = list(payload.epochs)
        self.device = torch.device("cpu")

    def get_preds(self) -> Any:
        from engine.evaluation import Preds
        p = self.payload
        return Preds(p.probs, p.targets, p.losses, [str(path) for path, _ in self.dls.valid_items])

    def save(self, path: Any, **meta: Any) -> Any:
        # The Learner's own checkpoint writer, so a shipped run's model.safetensors holds exactly
        # what an in-process run's does (it reads only model, dls, history and device).
        from engine.training import Learner
        return Learner.save(self, path, **meta)  # type: ignore[arg-type]


def save_shipped(payload: RunPayload) -> Any:
    """Save a run trained on a Ray worker into this server's run store; returns its RunInfo."""
    from engine.runs import save_run

    return save_run(ShippedLearner(payload), owner=payload.owner, data_name=payload.data_name,
                    settings=payload.settings, history=payload.history, status=payload.status,
                    backend="ray", host=payload.host, pid=payload.pid)


__all__ = ["RunStore", "LocalRunStore", "RunPayload", "ShippingRunStore", "ShippedLearner",
           "save_shipped"]
