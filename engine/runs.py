"""The run store: every finished or cancelled training run, saved under <data dir>/runs/<id>/.

A run folder holds everything the Explorer needs to look at a model without retraining it:

    model.safetensors + model.json   weights and their description (engine.models.save_checkpoint)
    preds.npz                        validation probs (N, C) float32, targets (N,) int64, losses (N,) float32
    items.json                       the validation files in prediction order, [[path, label], ...]
    history.json                     batch and epoch records (and the LR finder's curve, if run)
    settings.json                    data, model and training settings
    run.json                         RunInfo: id, owner, time, status, architecture, metrics

Ids come from `secrets.token_urlsafe(16)`: 22 URL-safe characters, unguessable, so a share link
`?run=<id>` is the only way to open someone else's run. An id is checked against RUN_ID before
any path is built from it, and the resolved folder must sit directly inside runs_dir().
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.fsutil import atomic_dir
from engine.paths import data_dir

RUN_ID = re.compile(r"[A-Za-z0-9_-]{22}")   # always used with fullmatch (no "\n" after it)
OWNER_TEXT = re.compile(r"[\x21-\x7e]{0,256}")   # what an owner token may look like in run.json
MAX_JSON_BYTES = 64 * 1024 * 1024   # a run's largest file (items.json of 100k images) is a few MB
#: What reading a damaged or hostile run file may raise; each becomes a RunError sentence (or, in
#: list_runs, a skipped run) — deep nesting makes json raise RecursionError, 1e999 counts overflow.
DAMAGE = (OSError, ValueError, KeyError, TypeError, ArithmeticError, RecursionError)
STATUSES = ("done", "cancelled")
BACKENDS = ("in-process", "ray")                 # where a run was trained (engine.jobs)
HOST_TEXT = re.compile(r"[A-Za-z0-9._-]{0,253}")  # a host name as run.json may hold it
METRIC_NAMES = ("error_rate", "accuracy", "valid_loss", "train_loss")


class RunError(ValueError):
    """A run that cannot be saved or opened; the message is a sentence for the user."""


def runs_dir() -> Path:
    """<data dir>/runs, created on first use."""
    path = data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class RunInfo:
    """What a list of runs shows (run.json)."""

    id: str
    owner: str                      # opaque per-browser-session token; never shown on a page
    created: float                  # seconds since the epoch
    status: str                     # "done" | "cancelled"
    arch: str
    data: str                       # data-set name ("digits", "pets-breeds", an upload's name)
    classes: list[str]
    metrics: dict[str, float]       # error_rate, accuracy, valid_loss, train_loss (NaN when unknown)
    epochs: int                     # epochs finished (all stages)
    backend: str = "in-process"     # where it trained: "in-process" (the server) or "ray" (a worker)
    host: str = ""                  # host name of the process that trained it ("" in older runs)
    pid: int = 0                    # ... and its process id (0 in older runs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunInfo":
        """Read run.json's dict, checking every field's type and range: raises ValueError or
        TypeError (never anything else) when the file was damaged or tampered with."""
        if not isinstance(d, dict):
            raise TypeError("run.json must hold an object")
        owner, classes, metrics = d.get("owner", ""), d.get("classes", []), d.get("metrics", {})
        # Tokens the app makes are 22 URL-safe characters; anything outside printable ASCII (which
        # secrets.compare_digest refuses with a TypeError) can only be a tampered file.
        if not isinstance(owner, str) or not OWNER_TEXT.fullmatch(owner):
            raise ValueError("the owner is not a token")
        if not isinstance(classes, list) or not classes or not isinstance(metrics, dict):
            raise TypeError("classes must be a list of names and metrics an object")
        created, epochs = float(d["created"]), d.get("epochs", 0)
        if not math.isfinite(created) or isinstance(epochs, bool) or not isinstance(epochs, int) \
                or not 0 <= epochs <= 1_000_000:
            raise ValueError("created or epochs is out of range")
        backend, host, pid = d.get("backend", "in-process"), d.get("host", ""), d.get("pid", 0)
        if backend not in BACKENDS or not isinstance(host, str) or not HOST_TEXT.fullmatch(host) \
                or isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < 2**32:
            raise ValueError("backend, host or pid is not what a run records")
        return cls(id=str(d["id"]), owner=owner, created=created,
                   status=str(d.get("status", "done")), arch=str(d.get("arch", "")),
                   data=str(d.get("data", "")), classes=[str(c) for c in classes],
                   metrics={str(k): float(v) if v is not None else math.nan
                            for k, v in metrics.items()},
                   epochs=epochs, backend=backend, host=host, pid=pid)


@dataclass
class Run:
    """A saved run, loaded: predictions in validation order and the files they belong to."""

    info: RunInfo
    dir: Path
    classes: list[str]
    probs: np.ndarray                # (N, C) float32 softmax probabilities
    targets: np.ndarray              # (N,) int64 true class index
    losses: np.ndarray               # (N,) float32 cross-entropy per item
    items: list[tuple[str, int]]     # (N,) (file path as stored, label)
    history: dict[str, Any]          # {"batches", "epochs", "lr_find" | None, "precompute": {used, ...}}
    settings: dict[str, Any]
    checkpoint: Path = field(default=Path())

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1) if len(self.probs) else np.zeros(0, np.int64)

    def load_model(self) -> Any:
        """The trained model as an engine.models.Checkpoint (safetensors; nothing unpickled)."""
        from engine.models import CheckpointError, load_checkpoint
        try:
            return load_checkpoint(self.checkpoint)
        except CheckpointError as exc:
            raise RunError(f"The model of run {self.info.id} could not be opened: {exc}") from exc


# ------------------------------------------------------------------------------------- helpers


def new_run_id() -> str:
    """22 URL-safe characters from the OS's secure random source."""
    return secrets.token_urlsafe(16)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, slice):
        return {"slice": [obj.start, obj.stop]}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _clean(obj: Any) -> Any:
    """NaN/inf -> None so the JSON is standard (browsers and other tools reject NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_clean(obj), default=_json_default, indent=1), encoding="utf-8")


def _read_json(path: Path, max_bytes: int | None = None) -> Any:
    """A run file's JSON; a file over max_bytes (MAX_JSON_BYTES) is refused before it is read
    into memory."""
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"{path.name} is over {max_bytes:,} bytes")
    return json.loads(raw.decode("utf-8"))


def same_owner(a: str, b: str) -> bool:
    """Whether two owner tokens are equal, in constant time, for any text (compare_digest refuses
    non-ASCII str with a TypeError, so both are compared as UTF-8 bytes)."""
    return secrets.compare_digest(str(a).encode("utf-8", "surrogatepass"),
                                  str(b).encode("utf-8", "surrogatepass"))


def _read_info(folder: Path) -> RunInfo:
    """run.json of a run folder; the id it names must be the folder's own."""
    info = RunInfo.from_dict(_read_json(folder / "run.json", max_bytes=1024 * 1024))
    if info.id != folder.name:
        raise ValueError("run.json names another run")
    return info


def _check_lines_up(run_id: str, classes: list[str], probs: np.ndarray, targets: np.ndarray,
                    losses: np.ndarray, items: list[tuple[str, int]], history: Any,
                    settings: Any) -> None:
    """RunError unless predictions, classes and files describe the same N validation images."""
    def damaged(what: str) -> RunError:
        return RunError(f"Run {run_id} is damaged: {what}, so it cannot be opened.")

    n = len(targets)
    if targets.ndim != 1 or probs.ndim != 2 or len(probs) != n or losses.shape != (n,):
        raise damaged("its predictions do not line up")
    if not classes or probs.shape[1] != len(classes):
        raise damaged(f"it names {len(classes)} classes but its predictions have "
                      f"{probs.shape[1]} columns")
    if n and (targets.min() < 0 or targets.max() >= len(classes)):
        raise damaged("a true class lies outside its class list")
    if len(items) != n:
        raise damaged(f"it lists {len(items)} validation files for {n} predictions")
    if any(label != t for (_, label), t in zip(items, targets.tolist())):
        raise damaged("its validation files' classes differ from its predictions'")
    named = [p for p, _ in items if p]
    if len(set(named)) != len(named):
        raise damaged("its validation list names the same file twice")
    if not isinstance(history, dict) or not isinstance(settings, dict):
        raise damaged("its history or settings are not what a run writes")


def _metrics(learner: Any, preds: Any) -> dict[str, float]:
    last = learner.history[-1] if getattr(learner, "history", None) else {}
    acc = float(preds.accuracy) if len(preds.targets) else math.nan
    vl = float(np.mean(preds.losses)) if len(preds.losses) else math.nan
    return {"error_rate": 1 - acc if math.isfinite(acc) else math.nan, "accuracy": acc,
            "valid_loss": vl, "train_loss": float(last.get("train_loss", math.nan))}


# ---------------------------------------------------------------------------------- save / load


def save_run(learner: Any, *, owner: str, data_name: str, settings: dict, history: dict,
             status: str, run_id: str | None = None, backend: str = "in-process",
             host: str | None = None, pid: int | None = None) -> RunInfo:
    """Save the learner's model, validation predictions, history and settings as a new run.
    backend, host and pid say where it trained (default: in this process).

    Everything is written into a temporary folder inside runs_dir() that is renamed into place at
    the end, so a run folder is either complete or absent. Metrics are measured on the model as
    saved (a cancelled fit is rolled back to its last finished epoch by the Learner).
    """
    if status not in STATUSES:
        raise RunError(f"A run's status must be one of {', '.join(STATUSES)}; got {status!r}.")
    if not owner:
        raise RunError("A run needs an owner token.")
    run_id = run_id or new_run_id()
    if not RUN_ID.fullmatch(run_id):
        raise RunError("A run id must be 22 URL-safe characters.")
    root = runs_dir()
    dest = root / run_id
    if dest.exists():
        raise RunError(f"A run with id {run_id} already exists.")
    # Plain JSON from here on (slices, tuples, NumPy numbers and paths become lists, numbers, text).
    settings = json.loads(json.dumps(_clean(settings), default=_json_default))
    preds = learner.get_preds()
    classes = [str(c) for c in learner.dls.classes]
    items = [(str(p), int(y)) for p, y in getattr(learner.dls, "valid_items", [])]
    if len(items) != len(preds.targets):
        items = [(p or "", int(t)) for p, t in zip(preds.paths or [""] * len(preds.targets),
                                                   preds.targets)]
    info = RunInfo(id=run_id, owner=owner, created=time.time(), status=status,
                   arch=str(getattr(learner.model, "arch", settings.get("arch", ""))),
                   data=str(data_name), classes=classes, metrics=_metrics(learner, preds),
                   epochs=len(getattr(learner, "history", []) or []),
                   backend=backend if backend in BACKENDS else "in-process",
                   host=re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname() if host is None
                               else str(host))[:253],
                   pid=os.getpid() if pid is None else int(pid))
    # Written into a hidden .<id>.part-… folder and renamed: list_runs never sees half a run.
    with atomic_dir(dest, existing="error") as tmp:
        learner.save(tmp / "model.safetensors", settings=settings, run_id=run_id)
        from engine.models import read_checkpoint_meta
        _write_json(tmp / "model.json", read_checkpoint_meta(tmp / "model.safetensors"))
        with open(tmp / "preds.npz", "wb") as f:
            np.savez(f, probs=np.asarray(preds.probs, np.float32),
                     targets=np.asarray(preds.targets, np.int64),
                     losses=np.asarray(preds.losses, np.float32))
        _write_json(tmp / "items.json", [[p, y] for p, y in items])
        _write_json(tmp / "history.json", history)
        _write_json(tmp / "settings.json", settings)
        _write_json(tmp / "run.json", asdict(info))
    return info


def _run_folder(run_id: Any) -> Path:
    """The folder of run_id, refusing anything that is not a well-formed id inside runs_dir()."""
    # The id is checked before any path is made from it: "../x", "%2e%2e/x", "/etc", "a/b" never
    # match 22 characters of [A-Za-z0-9_-].
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise RunError("This is not a valid run id; a run link ends in ?run= and 22 letters, "
                       "digits, - or _.")
    root = runs_dir().resolve()
    folder = (root / run_id).resolve()
    # Belt and braces: the resolved folder must be a direct child of the runs folder (a symlink
    # planted inside runs/ could otherwise point elsewhere; a string prefix test would accept a
    # sibling such as runs-evil/).
    if folder.parent != root or not folder.is_dir():
        raise RunError("There is no saved run with this id; it may have been deleted.")
    return folder


def read_info(run_id: str) -> RunInfo:
    """The RunInfo of one run (cheap: run.json only)."""
    folder = _run_folder(run_id)
    try:
        return _read_info(folder)
    except DAMAGE as exc:
        raise RunError(f"Run {run_id} is damaged (its run.json cannot be read).") from exc


def _read_items(folder: Path) -> list[tuple[str, int]]:
    raw = _read_json(folder / "items.json")
    if not isinstance(raw, list) or not all(isinstance(it, list) and len(it) == 2
                                            and isinstance(it[0], str) and isinstance(it[1], int)
                                            and not isinstance(it[1], bool) for it in raw):
        raise TypeError("items.json must list [path, label] pairs")
    return [(p, y) for p, y in raw]


def load_run(run_id: str) -> Run:
    """Open a saved run (predictions, items, history, settings); the model loads on demand.

    Everything is checked to line up (one class per probability column, one file and label per
    prediction, no file twice), so a damaged or tampered run is a RunError sentence, never an
    IndexError on a page."""
    folder = _run_folder(run_id)
    try:
        info = _read_info(folder)
        with np.load(folder / "preds.npz", allow_pickle=False) as z:
            probs = np.asarray(z["probs"], np.float32)
            targets = np.asarray(z["targets"], np.int64)
            losses = np.asarray(z["losses"], np.float32)
        items = _read_items(folder)
        history = _read_json(folder / "history.json")
        settings = _read_json(folder / "settings.json")
    except DAMAGE as exc:
        raise RunError(f"Run {run_id} is damaged or incomplete and cannot be opened.") from exc
    _check_lines_up(run_id, list(info.classes), probs, targets, losses, items, history, settings)
    return Run(info=info, dir=folder, classes=list(info.classes), probs=probs, targets=targets,
               losses=losses, items=items, history=history, settings=settings,
               checkpoint=folder / "model.safetensors")


def list_runs(owner: str | None = None) -> list[RunInfo]:
    """Saved runs, newest first; only `owner`'s when given (None lists all, for tests and admins)."""
    out = []
    root = runs_dir()
    for child in root.iterdir():
        if not RUN_ID.fullmatch(child.name) or not child.is_dir() or child.is_symlink():
            continue   # temporary .part folders and anything foreign
        try:
            info = _read_info(child)
        except DAMAGE:
            continue   # a damaged run is skipped in the list; load_run explains it when asked
        if owner is None or same_owner(info.owner, owner):
            out.append(info)
    return sorted(out, key=lambda r: r.created, reverse=True)


def delete_run(run_id: str, owner: str) -> None:
    """Remove one of owner's runs."""
    info = read_info(run_id)
    if not same_owner(info.owner, owner):
        raise RunError("Only the session that made a run can delete it.")
    shutil.rmtree(_run_folder(run_id))


# ------------------------------------------------------------------ whose data a run was trained on

DEMO_DIR = "explore-demo"   # <data dir>/explore-demo/<demo_prefix(owner)><time>: demo copies


def demo_prefix(owner: str) -> str:
    """Start of the name of owner's demo data folders (engine.demo): a hash of the token, so a
    folder name never shows the token itself."""
    import hashlib

    return f"digits-{hashlib.sha256(owner.encode()).hexdigest()[:10]}-"


def owns_data(data_root: str | os.PathLike, owner: str) -> bool:
    """Whether a data folder belongs to owner's browser session alone (its uploads under
    sessions/<owner>, or its demo copy), so that cleaning it changes nobody else's data."""
    base = data_dir().resolve()
    root = Path(data_root).resolve()
    if root.is_relative_to(base / "sessions" / owner):
        return True
    return root.parent == base / DEMO_DIR and root.name.startswith(demo_prefix(owner))


__all__ = ["RUN_ID", "OWNER_TEXT", "DAMAGE", "RunError", "same_owner", "RunInfo", "Run", "runs_dir", "new_run_id", "save_run",
           "load_run", "read_info", "list_runs", "delete_run", "DEMO_DIR", "demo_prefix",
           "owns_data"]
