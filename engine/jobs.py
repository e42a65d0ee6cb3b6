"""Background jobs: long work (kernel learning, LR finder, training) runs on a worker thread and
emits events; a page polls the job and redraws, so a rerun of the page never kills the work.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class JobCancelled(Exception):
    """Raised inside a job's function by `JobContext.check_cancelled` once Cancel was pressed."""


@dataclass
class JobContext:
    """Handed to a job's function: emit events, report progress, notice a cancel request."""

    job: "Job"

    def emit(self, kind: str, **data: Any) -> None:
        self.job._append({"kind": kind, "time": time.time(), **data})

    def progress(self, fraction: float, message: str = "") -> None:
        with self.job._lock:
            self.job.progress = min(max(float(fraction), 0.0), 1.0)
            self.job.message = message

    @property
    def cancelled(self) -> bool:
        return self.job._cancel.is_set()

    def check_cancelled(self) -> None:
        if self.job._cancel.is_set():
            raise JobCancelled()


@dataclass
class Job:
    """One unit of background work. Read it from any thread; only the worker writes."""

    name: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = QUEUED
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None          # a sentence for the user when status is FAILED
    detail: str | None = None         # the traceback, for logs only, never for the page
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
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

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished_ok(self) -> bool:
        return self.status == DONE

    @property
    def is_active(self) -> bool:
        return self.status not in FINISHED


class JobRunner:
    """A small pool of worker threads. One per process is shared by all sessions (jobs are not)."""

    def __init__(self, max_workers: int = 1, on_error: Callable[[BaseException], str] | None = None):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dllab-job")
        self._on_error = on_error or (lambda exc: f"The job stopped with an error: {exc}")

    def submit(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Run fn(ctx, *args, **kwargs) in the background; its return value becomes job.result."""
        job = Job(name=name)
        self._pool.submit(self._run, job, fn, args, kwargs)
        return job

    def _run(self, job: Job, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        if job._cancel.is_set():
            job.status, job.finished = CANCELLED, time.time()
            job._done.set()
            return
        job.status, job.started = RUNNING, time.time()
        try:
            job.result = fn(JobContext(job), *args, **kwargs)
            job.status = CANCELLED if job._cancel.is_set() else DONE
        except JobCancelled:
            job.status = CANCELLED
        except Exception as exc:  # the job's error is reported on the page, never raised into it
            job.error = self._on_error(exc)
            job.detail = traceback.format_exc()
            job.status = FAILED
        finally:
            job.finished = time.time()
            job._done.set()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
