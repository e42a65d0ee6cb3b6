"""Background jobs: long work (kernel learning, LR finder, training) runs on a worker thread and
emits events; a page polls the job and redraws, so a rerun of the page never kills the work.

One JobRunner per server process is shared by every browser session (the page keeps it in
st.cache_resource); each job belongs to an *owner* token, and a session only ever looks up its own.
Jobs ask for a *resource* ("cpu", "cuda:0", "mps"); each resource runs a fixed number of jobs at
once (one per GPU, and by default one on the CPU, because two trainings on the same cores are each
more than twice as slow). The others wait in one first-come-first-served queue and know their
position. A job nobody has watched (`touch`) for `watch_timeout` seconds is cancelled, so a closed
browser tab does not hold the GPU; memory is handed back when any job ends.

Settings (environment variables, read when a runner is made):
  DLLAB_CPU_JOBS        jobs running at once on the CPU (default 1)
  DLLAB_GPU_JOBS        jobs running at once per GPU (default 1)
  DLLAB_IO_JOBS         downloads running at once (default 2; resource "io", its own slots, so a
                        download never makes a training wait)
  DLLAB_JOB_WATCH_S     seconds a job may go unwatched before it is cancelled (default 300)
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)

#: Why a job was cancelled, as a sentence the page can show.
CANCEL_USER = "Cancelled."
CANCEL_UNWATCHED = ("Stopped because no page watched it for a while (the browser tab was closed or "
                    "asleep); start it again.")
CANCEL_SHUTDOWN = "Stopped because the server is shutting down."

OOM_ADVICE = ("The GPU ran out of memory; lower the batch size or the image size and start again.")


def remote_job(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a job function that may run on a Ray worker (engine.jobs.ray_runner): one that reaches
    nothing of the server but its arguments (small picklable values; a RunSettings argument's data
    folder is shipped for it), accepts `store=` when it takes a RunSettings
    (engine.jobs.stores), and returns a small result. The in-process runner runs it as any other."""
    fn.remote_job = True  # type: ignore[attr-defined]
    return fn


class JobCancelled(Exception):
    """Raised inside a job's function by `JobContext.check_cancelled` once Cancel was pressed."""


@dataclass
class JobContext:
    """Handed to a job's function: emit events, report progress, notice a cancel request."""

    job: "Job"

    def emit(self, kind: str, **data: Any) -> None:
        """Record an event (the signature of engine.training's on_event)."""
        self.job._append({"kind": kind, "time": time.time(), **data})

    def progress(self, fraction: float, message: str = "") -> None:
        with self.job._lock:
            self.job.progress = min(max(float(fraction), 0.0), 1.0)
            self.job.message = message

    @property
    def cancelled(self) -> bool:
        """True once Cancel was pressed (a Learner's should_stop checks this every batch)."""
        return self.job._cancel.is_set()

    def check_cancelled(self) -> None:
        if self.job._cancel.is_set():
            raise JobCancelled()


@dataclass
class Job:
    """One unit of background work. Read it from any thread; only the runner and worker write."""

    name: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    owner: str = ""                   # opaque token of the browser session that submitted it
    resource: str = "cpu"             # "cpu", "cuda:0", "mps": where it runs, what it waits for
    status: str = QUEUED
    position: int | None = None       # 1 = next to start; None once running or finished
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None          # a sentence for the user when status is FAILED
    detail: str | None = None         # the traceback, for logs only, never for the page
    cancel_reason: str | None = None  # a sentence when status is CANCELLED
    meta: dict = field(default_factory=dict)   # what the page wants to remember about the job
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    _events: list[dict] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def _append(self, event: dict) -> None:
        with self._lock:
            self._events.append(event)

    def events(self, since: int = 0) -> list[dict]:
        """Events from index `since` on (a page keeps its own cursor to draw only what is new)."""
        with self._lock:
            return list(self._events[since:])

    @property
    def n_events(self) -> int:
        with self._lock:
            return len(self._events)

    def touch(self) -> None:
        """Say that a page is still watching (resets the unwatched-job timer)."""
        self.last_seen = time.monotonic()

    def cancel(self, reason: str = CANCEL_USER) -> None:
        """Ask the job to stop; a Learner notices before its next batch."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished_ok(self) -> bool:
        return self.status == DONE

    @property
    def is_active(self) -> bool:
        return self.status not in FINISHED

    @property
    def elapsed(self) -> float:
        """Seconds since it started running (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


def resource_for(device: Any) -> str:
    """The queue a job on `device` waits in: "cpu", "mps", "cuda:<index>", or "io" (downloads:
    they wait on the network, not on a processor)."""
    text = str(device) if device else "cpu"   # torch.device("cuda") prints as "cuda"
    if text == "io":
        return "io"
    if text.startswith("cuda"):
        return text if ":" in text else "cuda:0"
    return "mps" if text.startswith("mps") else "cpu"


def describe_error(exc: BaseException) -> str:
    """One sentence for a job's failure: our own typed errors already are one; CUDA running out of
    memory gets advice; anything else is named with its type."""
    name = type(exc).__name__
    text = str(exc)
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return OOM_ADVICE
    # DataError, ModelError, TrainingError, RunError, CheckpointError: ValueErrors with a sentence.
    if isinstance(exc, ValueError) and name.endswith("Error") and name != "ValueError" and text:
        return text
    return f"The job stopped with an error ({name}: {text or 'no message'})."


def release_memory(resource: str = "cpu") -> None:
    """Collect garbage and, on a GPU, return cached blocks to the driver (what empty_cache does)."""
    gc.collect()
    torch = sys.modules.get("torch")   # never import torch just to release nothing
    if torch is None:
        return
    try:
        if resource.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
        elif resource == "mps" and hasattr(torch, "mps"):
            torch.mps.empty_cache()
    except Exception:  # releasing memory must never turn a finished job into a crash
        pass


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _env_float(name: str, default: float) -> float:
    try:
        return max(0.05, float(os.environ.get(name, default)))
    except ValueError:
        return default


class JobRunner:
    """A process-wide, thread-safe queue of jobs with a fixed number of running slots per resource.

    One per process is shared by all sessions; jobs are not (look them up with the owner token).
    """

    backend = "in-process"            # where run jobs train ("ray": engine.jobs.ray_runner)
    problem: str | None = None        # a sentence while the backend cannot run jobs (Ray only)

    def __init__(self, max_workers: int | None = None, on_error: Callable[[BaseException], str] | None = None,
                 *, cpu_slots: int | None = None, gpu_slots: int | None = None,
                 io_slots: int | None = None,
                 watch_timeout: float | None = None, reap_every: float = 1.0,
                 keep_finished: float = 3600.0):
        # max_workers is the old name for the CPU's slots; kept so existing callers still work.
        self.cpu_slots = cpu_slots or max_workers or _env_int("DLLAB_CPU_JOBS", 1)
        self.gpu_slots = gpu_slots or _env_int("DLLAB_GPU_JOBS", 1)
        self.io_slots = io_slots or _env_int("DLLAB_IO_JOBS", 2)
        self.watch_timeout = watch_timeout if watch_timeout is not None else \
            _env_float("DLLAB_JOB_WATCH_S", 300.0)
        self.keep_finished = keep_finished   # seconds a finished job stays findable by its owner
        self._on_error = on_error or describe_error
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}      # every job not yet forgotten, in submission order
        self._queue: list[Job] = []          # waiting jobs, first come first served
        self._running: dict[str, list[Job]] = {}
        self._closed = False
        self._reap_every = reap_every
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # ------------------------------------------------------------------------------ submitting

    def slots(self, resource: str) -> int:
        if resource == "io":
            return self.io_slots
        return self.cpu_slots if resource == "cpu" else self.gpu_slots

    def submit(self, name: str, fn: Callable[..., Any], *args: Any, owner: str = "",
               resource: str = "cpu", meta: dict | None = None, **kwargs: Any) -> Job:
        """Queue fn(ctx, *args, **kwargs); its return value becomes job.result.

        `owner` and `resource` are taken by the runner (not passed to fn); the job starts as soon
        as `resource` has a free slot and every earlier job waiting for it has started.
        """
        job = Job(name=name, owner=owner, resource=resource_for(resource), meta=dict(meta or {}))
        with self._lock:
            if self._closed:
                raise RuntimeError("The job runner has been shut down.")
            self._forget_old()
            self._jobs[job.id] = job
            self._queue.append(job)
            job._call = (fn, args, kwargs)  # type: ignore[attr-defined]
            self._schedule()
            self._ensure_reaper()
        return job

    def _schedule(self) -> None:
        """Start every queued job whose resource has a free slot, in queue order (lock held)."""
        for job in list(self._queue):
            if job._cancel.is_set():   # cancelled while waiting: never starts
                self._queue.remove(job)
                self._finish(job, CANCELLED)
                continue
            running = self._running.setdefault(job.resource, [])
            if len(running) < self.slots(job.resource):
                self._queue.remove(job)
                running.append(job)
                job.status, job.position, job.started = RUNNING, None, time.time()
                t = threading.Thread(target=self._run, args=(job,), daemon=True,
                                     name=f"dllab-job-{job.name}-{job.id[:6]}")
                t.start()
        # Positions count the jobs ahead that wait for the same resource.
        ahead: dict[str, int] = {}
        for job in self._queue:
            ahead[job.resource] = ahead.get(job.resource, 0) + 1
            job.position = ahead[job.resource]

    def _finish(self, job: Job, status: str) -> None:
        job.status = status
        job.position = None
        job.finished = time.time()
        if status == CANCELLED and job.cancel_reason is None:
            job.cancel_reason = CANCEL_USER
        job.__dict__.pop("_call", None)   # drop references to the function's arguments
        job._done.set()

    def _run(self, job: Job) -> None:
        fn, args, kwargs = job._call  # type: ignore[attr-defined]
        status = DONE
        try:
            if job._cancel.is_set():
                status = CANCELLED
            else:
                job.result = fn(JobContext(job), *args, **kwargs)
                status = CANCELLED if job._cancel.is_set() else DONE
        except JobCancelled:
            status = CANCELLED
        except BaseException as exc:  # reported on the page, never raised into another job
            try:
                job.error = self._on_error(exc)
            except Exception:
                job.error = describe_error(exc)
            job.detail = traceback.format_exc()
            status = FAILED
            del exc
        finally:
            fn = args = kwargs = None   # noqa: F841 - let the model and data go before releasing
            if status == CANCELLED and job.cancel_reason == CANCEL_UNWATCHED:
                job.result = None       # nobody is coming back for it
            release_memory(job.resource)
            with self._lock:
                running = self._running.get(job.resource, [])
                if job in running:
                    running.remove(job)
                self._finish(job, status)
                if not self._closed:
                    self._schedule()

    # ------------------------------------------------------------------------------- looking up

    def get(self, job_id: str | None, owner: str | None = None) -> Job | None:
        """The job with this id, or None (also None when it belongs to another owner)."""
        if not job_id:
            return None
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def jobs(self, owner: str | None = None) -> list[Job]:
        """Jobs still remembered, oldest first; only owner's when given."""
        with self._lock:
            return [j for j in self._jobs.values() if owner is None or j.owner == owner]

    def active(self, owner: str) -> Job | None:
        """owner's newest queued or running job (how a reopened page reattaches)."""
        live = [j for j in self.jobs(owner) if j.is_active]
        return live[-1] if live else None

    def position(self, job: Job) -> int | None:
        with self._lock:
            return job.position

    def queue_length(self, resource: str = "cpu") -> int:
        with self._lock:
            return sum(1 for j in self._queue if j.resource == resource_for(resource))

    def running(self, resource: str | None = None) -> list[Job]:
        with self._lock:
            if resource is None:
                return [j for js in self._running.values() for j in js]
            return list(self._running.get(resource_for(resource), []))

    def cancel(self, job_id: str, owner: str | None = None, reason: str = CANCEL_USER) -> bool:
        """Cancel one job (only owner's when owner is given); a waiting job never starts."""
        job = self.get(job_id, owner)
        if job is None or not job.is_active:
            return False
        job.cancel(reason)
        with self._lock:
            if job in self._queue:
                self._schedule()   # removes it and moves everyone behind it up
        return True

    # ---------------------------------------------------------------------- unwatched and old

    def reap(self, now: float | None = None) -> list[Job]:
        """Cancel jobs nobody touched for watch_timeout seconds; returns them. Runs every
        `reap_every` seconds on a background thread, and may be called directly (tests)."""
        now = time.monotonic() if now is None else now
        stale = [j for j in self.jobs() if j.is_active and not j._cancel.is_set()
                 and now - j.last_seen > self.watch_timeout]
        for job in stale:
            self.cancel(job.id, reason=CANCEL_UNWATCHED)
        with self._lock:
            self._forget_old()
        return stale

    def _forget_old(self) -> None:
        cutoff = time.time() - self.keep_finished
        for jid in [jid for jid, j in self._jobs.items()
                    if not j.is_active and (j.finished or 0) < cutoff]:
            del self._jobs[jid]

    def _ensure_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap_loop, daemon=True, name="dllab-job-reaper")
            self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stop.wait(self._reap_every):
            try:
                self.reap()
            except Exception:  # the reaper must outlive any one bad job
                pass

    def shutdown(self, wait: float | None = None) -> None:
        """Cancel everything (waiting jobs never start) and stop the reaper."""
        with self._lock:
            self._closed = True
            jobs = [j for j in self._jobs.values() if j.is_active]
        for j in jobs:
            j.cancel(CANCEL_SHUTDOWN)
        with self._lock:
            for j in list(self._queue):
                self._queue.remove(j)
                self._finish(j, CANCELLED)
        self._stop.set()
        if wait:
            for j in jobs:
                j.wait(wait)


__all__ = ["Job", "JobContext", "JobRunner", "JobCancelled", "QUEUED", "RUNNING", "DONE", "FAILED",
           "CANCELLED", "FINISHED", "STATUSES", "resource_for", "describe_error", "release_memory",
           "remote_job", "OOM_ADVICE", "CANCEL_USER", "CANCEL_UNWATCHED"]
