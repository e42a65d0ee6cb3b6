"""What runs inside the Ray cluster: the job board (an actor holding each job's new events, progress
and cancel flag) and the task that runs one job on a worker.

The task talks to the board, never to the server: every 0.1 s it pushes the events its job emitted
(one call for the batch), and one thread waits on the board for Cancel, so the Learner sees it
before its next batch. The server's bridge (engine.jobs.ray_bridge) drains the board and relays.
The job's data set arrives packed (engine.jobs.datapack) and is unpacked once per worker machine;
a trained run goes back as a payload (engine.jobs.stores) that the server saves.
"""
from __future__ import annotations

import asyncio
import importlib
import os
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from engine.jobs.runner import CANCEL_USER, JobCancelled, describe_error

FLUSH_S = 0.1          # seconds between pushes of a job's events to the board
CANCEL_POLL_S = 2.0    # longest wait of one cancel long-poll (it returns at once on Cancel)
STOPPING = "Stopping: Cancel was pressed"


class JobBoard:
    """The board of one app server's Ray jobs (an async actor: a waiting long-poll holds no
    thread). Jobs are plain dicts of lists; the bridge drains what is new."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    def _job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            self.jobs[job_id] = {"events": [], "progress": 0.0, "message": "", "changed": False,
                                 "started": None, "cancel": asyncio.Event(), "reason": None}
        return self.jobs[job_id]

    async def started(self, job_id: str, where: dict[str, Any]) -> bool:
        """The task began on a worker; returns whether the job was cancelled already."""
        job = self._job(job_id)
        job["started"], job["changed"] = where, True
        return job["cancel"].is_set()

    async def push(self, job_id: str, events: list[dict], progress: float, message: str) -> None:
        job = self._job(job_id)
        job["events"] += events
        job["progress"], job["message"], job["changed"] = progress, message, True

    async def cancel(self, job_id: str, reason: str) -> None:
        job = self._job(job_id)
        job["reason"] = job["reason"] or reason
        job["cancel"].set()

    async def wait_cancel(self, job_id: str, timeout: float) -> str | None:
        """The cancel reason once Cancel is pressed; None when `timeout` passed first; "" when the
        job is no longer on the board (its task should stop listening)."""
        if job_id not in self.jobs:
            return ""
        try:
            await asyncio.wait_for(self.jobs[job_id]["cancel"].wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.jobs[job_id]["reason"] or CANCEL_USER

    async def drain(self) -> dict[str, dict[str, Any]]:
        """What changed since the last drain: per job, its new events, progress, message, and
        where it started (once)."""
        out = {}
        for job_id, job in self.jobs.items():
            if job["changed"]:
                out[job_id] = {"events": job["events"], "progress": job["progress"],
                               "message": job["message"], "started": job["started"]}
                job["events"], job["started"], job["changed"] = [], None, False
        return out

    async def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    async def ping(self) -> bool:
        return True


class RemoteContext:
    """A job's JobContext on a Ray worker: emit, progress, cancelled, check_cancelled."""

    def __init__(self, board: Any, job_id: str):
        self._board, self.job_id = board, job_id
        self._lock = threading.Lock()
        self._events: list[dict] = []
        self._progress, self._message, self._dirty = 0.0, "", False
        self._cancel, self._stop = threading.Event(), threading.Event()
        self._threads = [threading.Thread(target=self._flush_loop, daemon=True),
                         threading.Thread(target=self._wait_cancel, daemon=True)]

    def start(self, where: dict[str, Any]) -> None:
        import ray
        if ray.get(self._board.started.remote(self.job_id, where)):
            self._cancel.set()   # cancelled while it waited for a worker
        for thread in self._threads:
            thread.start()

    def emit(self, kind: str, **data: Any) -> None:
        with self._lock:
            self._events.append({"kind": kind, "time": time.time(), **data})

    def progress(self, fraction: float, message: str = "") -> None:
        with self._lock:
            self._progress = min(max(float(fraction), 0.0), 1.0)
            self._message, self._dirty = message, True

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    def _flush(self) -> None:
        import ray
        with self._lock:
            events, self._events = self._events, []
            dirty, self._dirty = self._dirty, False
            progress, message = self._progress, self._message
        if events or dirty:
            ray.get(self._board.push.remote(self.job_id, events, progress, message))

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            try:
                self._flush()
            except Exception:  # the board is gone: the job ends on its own, nobody is listening
                self._cancel.set()
                return

    def _wait_cancel(self) -> None:
        import ray
        while not self._stop.is_set():
            try:
                reason = ray.get(self._board.wait_cancel.remote(self.job_id, CANCEL_POLL_S))
            except Exception:
                reason = ""
            if reason == "":
                return
            if reason:
                self.emit("stage", message=STOPPING)   # marks when the worker learned of it
                self._cancel.set()
                return

    def close(self) -> None:
        """Stop the threads and push the last events (before the task returns its result)."""
        self._stop.set()
        self._threads[0].join(timeout=10)
        self._flush()


@dataclass
class TaskSpec:
    """One job as the bridge hands it to a worker."""

    job_id: str
    fn: str                           # "module:qualname" of a function marked with remote_job
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    settings_at: int | None = None    # index in args of the job's RunSettings, when it has one
    data_key: str | None = None       # the packed data set's key (datapack)
    cpus: float = 1.0                 # the CPUs it was given (torch threads follow)
    gpu_share: float = 0.0


def import_job(path: str) -> Any:
    """The job function a spec names; only functions marked with remote_job may run here."""
    module, _, name = path.partition(":")
    fn: Any = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    if not getattr(fn, "remote_job", False):
        raise ValueError(f"{path} is not marked as a job that may run on a Ray worker.")
    return fn


def _set_threads(spec: TaskSpec) -> None:
    """torch's threads: the CPUs the job was given; a GPU job's share of this machine's cores.
    (A job that never imports torch does not pay for importing it here.)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = int(spec.cpus) if spec.cpus >= 1 else max(1, int((cores or 1) * spec.gpu_share))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, n))
    else:
        os.environ["OMP_NUM_THREADS"] = str(max(1, n))   # read by torch when it loads


def _data_folder(ctx: RemoteContext, key: str, box: list) -> str:
    """The job's data set on this worker: the cached copy, or fetched and unpacked once."""
    import ray

    from engine.jobs import datapack
    folder = datapack.cached(key)
    if folder is None:
        ctx.emit("stage", message="Receiving the data set")
        folder = datapack.unpack(key, ray.get(box[0]))
    return str(folder)


def run_task(spec: TaskSpec, box: list, board: Any) -> dict[str, Any]:
    """Run one job on this worker. box: [data set ObjectRef | None, start model ObjectRef | None],
    nested in a list so that Ray fetches them only when this worker has no cached copy."""
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    ctx = RemoteContext(board, spec.job_id)
    ctx.start(where)
    # Said at once: importing torch and reading the images can take seconds on a fresh worker.
    ctx.emit("stage", message=f"Starting on a Ray worker ({where['host']}, pid {where['pid']})")
    out: dict[str, Any] = {"status": "done", "result": None, "error": None, "detail": None,
                           "payload": None, "where": where}
    try:
        ctx.check_cancelled()
        fn = import_job(spec.fn)
        args, kwargs = list(spec.args), dict(spec.kwargs)
        store = None
        if spec.settings_at is not None:
            import ray

            from engine.jobs.stores import ShippingRunStore
            settings = args[spec.settings_at]
            local = _data_folder(ctx, spec.data_key, box) if spec.data_key else settings.folder
            start = ray.get(box[1]) if box[1] is not None else None
            store = ShippingRunStore(settings.folder, local, start)
            args[spec.settings_at] = settings.with_(folder=local)
            kwargs["store"] = store
        _set_threads(spec)
        out["result"] = fn(ctx, *args, **kwargs)
        out["status"] = "cancelled" if ctx.cancelled else "done"
        out["payload"] = store.payload if store is not None else None
    except (JobCancelled, KeyboardInterrupt):   # Ray withdraws a task with KeyboardInterrupt
        out["status"] = "cancelled"
    except BaseException as exc:  # reported as a sentence; the worker itself carries on
        out.update(status="failed", error=describe_error(exc), detail=traceback.format_exc())
    finally:
        ctx.close()
    return out


# Two task functions, so that each has its own worker policy (Ray fixes it per function): a GPU
# job gets a fresh worker process, which frees its GPU memory when it ends (Ray's default for GPU
# tasks); CPU jobs reuse warm workers, which have torch imported and the data set decoded.
def run_cpu_task(spec: TaskSpec, box: list, board: Any) -> dict[str, Any]:
    """run_task for a job that asked for CPUs."""
    return run_task(spec, box, board)


def run_gpu_task(spec: TaskSpec, box: list, board: Any) -> dict[str, Any]:
    """run_task for a job that asked for a share of a GPU."""
    return run_task(spec, box, board)


__all__ = ["JobBoard", "RemoteContext", "TaskSpec", "import_job", "run_task", "run_cpu_task",
           "run_gpu_task", "STOPPING"]
