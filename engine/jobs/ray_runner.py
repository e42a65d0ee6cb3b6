"""The Ray backend of the job runner, on the app server's side (it never imports ray).

RayJobRunner is a JobRunner — the pages use it exactly as the in-process one — whose run jobs (the
functions marked with `remote_job`: the LR finder and training) run as Ray tasks in worker
processes; everything else (downloads, which are I/O on the server's disk) stays on its threads.
A worker that crashes or is killed takes nothing down with it: its job ends FAILED with a sentence.

The Ray driver itself is a child process, the bridge (engine.jobs.ray_bridge), reached over a socket
pair: Ray ends a driver that loses its cluster, and that must never be the web server. Each job is
mirrored here as a RemoteJob — status, queue position, events, progress — from what the bridge
relays; a page polls it as before. A run trained on a worker comes back as a payload that this
server saves (engine.jobs.stores.save_shipped), so the run store stays on the server's disk.

Resources: a job that may use a GPU (its RunSettings' device is unset or "cuda", or it was submitted
for "cuda") asks for DLLAB_GPU_SHARE of one when the cluster has GPUs; any other asks for
DLLAB_CPU_PER_JOB CPUs (default: the largest node's CPUs / DLLAB_CPU_JOBS, so one CPU training per
node at a time, as in-process). Jobs waiting for resources are numbered per resource, first come
first served among this server's jobs.

Settings (environment variables):
  DLLAB_RAY_ADDRESS    unset: in-process; "local": a private Ray instance on this machine
                       (127.0.0.1); anything else ("auto", "host:6379"): that cluster ("ray://"
                       addresses need Ray Client, the `ray[client]` extra, not installed)
  DLLAB_GPU_SHARE      fraction of a GPU per job (default 1.0; 0.25 packs four jobs on a GPU)
  DLLAB_CPU_PER_JOB    CPUs per CPU job (default above)
  DLLAB_RAY_CONNECT_S  seconds to wait for the cluster before saying it cannot be reached (120)
  DLLAB_RAY_FORCE_S    seconds a cancelled job has to stop before its worker is killed (5)
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Callable

from engine.jobs.ray_bridge import unreachable
from engine.jobs.runner import (CANCEL_UNWATCHED, CANCEL_USER, CANCELLED, DONE, FAILED, QUEUED,
                                RUNNING, Job, JobRunner, describe_error)
from engine.paths import ROOT

LOG = logging.getLogger("dllab.jobs")
RETRY_S = 30.0          # after the cluster could not be reached, a new job tries again this late
LATE_S = 30.0           # a cancelled job the bridge never reports on is ended this long after force
RAY_LABELS = ("gpu", "ray")   # resources only Ray jobs have ("cpu" is shared with threads)
LOST = ("The connection to the Ray cluster was lost (its driver process ended), so the jobs "
        "running on it stopped; start them again.")


def _env_float(name: str, default: float, lo: float, hi: float) -> float:
    try:
        return min(max(float(os.environ.get(name) or default), lo), hi)
    except ValueError:
        return default


@dataclass(eq=False)
class RemoteJob(Job):
    """A job that runs on the Ray cluster: Cancel is passed on to its worker."""

    _on_cancel: Callable[["RemoteJob"], None] | None = field(default=None, repr=False)
    _spec: dict | None = field(default=None, repr=False)      # what the bridge needs to run it
    _wants_gpu: bool = field(default=False, repr=False)
    _cancel_at: float | None = field(default=None, repr=False)

    def cancel(self, reason: str = CANCEL_USER) -> None:
        first = not self._cancel.is_set()
        super().cancel(reason)
        if first and self._on_cancel is not None:
            self._cancel_at = time.monotonic()
            self._on_cancel(self)


@dataclass
class _Bridge:
    """The bridge process and its end of the socket pair."""

    proc: subprocess.Popen
    conn: Connection
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    ended: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, *message: Any) -> None:
        with self.lock:
            self.conn.send(message)

    def stop(self, wait: float = 10.0) -> None:
        """Ask it to end (it shuts its Ray connection down), then kill it if it does not, and
        whatever it left in its process group (a `local` instance's agents outlive a killed
        driver; the group holds only processes the bridge started)."""
        try:
            self.send("shutdown")
        except OSError:
            pass
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.conn.close()


def _settings_at(args: tuple) -> int | None:
    from engine.settings import RunSettings
    return next((i for i, a in enumerate(args) if isinstance(a, RunSettings)), None)


class RayJobRunner(JobRunner):
    """A JobRunner whose run jobs are Ray tasks (see the module's docstring)."""

    backend = "ray"

    def __init__(self, address: str, *, gpu_share: float | None = None,
                 cpu_per_job: float | None = None, connect_timeout: float | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.address = address
        self.gpu_share = gpu_share or _env_float("DLLAB_GPU_SHARE", 1.0, 0.01, 1.0)
        self.cpu_per_job = cpu_per_job or (_env_float("DLLAB_CPU_PER_JOB", 0, 0, 4096) or None)
        self.connect_timeout = connect_timeout or _env_float("DLLAB_RAY_CONNECT_S", 120, 1, 3600)
        self.force_after = _env_float("DLLAB_RAY_FORCE_S", 5, 0.5, 600)
        self.cluster: dict[str, Any] | None = None   # what the bridge found when it connected
        self.problem: str | None = None              # a sentence while the cluster cannot be used
        self._problem_at = -RETRY_S
        self._remote: dict[str, RemoteJob] = {}      # active Ray jobs, in submission order
        self._bridge: _Bridge | None = None
        with self._lock:
            self._start_bridge()

    # ------------------------------------------------------------------------------ the bridge

    def _start_bridge(self) -> None:
        """Start the driver process (lock held); it connects in the background."""
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "engine.jobs.ray_bridge", "--fd", str(theirs.fileno()),
               "--address", self.address, "--connect-timeout", str(self.connect_timeout)]
        # Its own session: Ctrl-C on the server reaches the server, which then ends the bridge.
        proc = subprocess.Popen(cmd, cwd=ROOT, pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self._bridge = _Bridge(proc, Connection(ours.detach()))
        LOG.info("Ray backend: connecting to %s (bridge pid %d)", self.address, proc.pid)
        threading.Thread(target=self._read_loop, args=(self._bridge,), daemon=True,
                         name="dllab-ray-bridge").start()

    def _read_loop(self, bridge: _Bridge) -> None:
        while True:
            try:
                if not bridge.conn.poll(1.0):
                    # The bridge gives up after connect_timeout itself; this is the fallback.
                    if not bridge.ready and \
                            time.monotonic() - bridge.started > self.connect_timeout + 10:
                        self._backend_failed(bridge, unreachable(self.address,
                                                                 self.connect_timeout))
                        return
                    if bridge.proc.poll() is None:
                        continue
                    raise EOFError
                message = bridge.conn.recv()
            except (EOFError, OSError):
                self._backend_failed(bridge, LOST)
                return
            try:
                self._on_message(bridge, message)
            except Exception:  # one odd message must not stop the relay
                LOG.exception("Ray backend: could not handle %s", message[0])

    def _on_message(self, bridge: _Bridge, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            with self._lock:
                bridge.ready, self.cluster, self.problem = True, message[1], None
                for job in list(self._remote.values()):
                    if job._spec is not None:
                        self._send(job)
                self._reposition()
            LOG.info("Ray backend ready: %s", message[1])
        elif kind == "cluster":
            self.cluster = message[1]
        elif kind == "problem":
            self._backend_failed(bridge, message[1])
        elif kind == "events":
            self._on_events(message[1])
        elif kind == "finished":
            job = self._remote.get(message[1])
            if job is not None:
                threading.Thread(target=self._finish_remote, args=(job, message[2]), daemon=True,
                                 name=f"dllab-ray-finish-{job.id[:6]}").start()

    def _backend_failed(self, bridge: _Bridge, sentence: str) -> None:
        """The cluster cannot be used: say so once, fail its jobs, let the bridge go."""
        with self._lock:
            if bridge.ended:
                return
            bridge.ended = True
            if self._bridge is bridge:
                self._bridge = None
            # A cluster that never answered is tried again by a job RETRY_S later at the
            # earliest (each try waits connect_timeout); a lost connection at the next job.
            self.problem = sentence
            self._problem_at = -RETRY_S if bridge.ready else time.monotonic()
            lost = [j for j in self._remote.values() if j.is_active]
            for job in lost:
                job.error = sentence
                self._end(job, FAILED)
        LOG.error("Ray backend: %s", sentence)
        threading.Thread(target=bridge.stop, args=(5.0,), daemon=True).start()

    # ------------------------------------------------------------------------------ submitting

    def submit(self, name: str, fn: Callable[..., Any], *args: Any, owner: str = "",
               resource: str = "cpu", meta: dict | None = None, **kwargs: Any) -> Job:
        """Run jobs marked with remote_job go to Ray; any other job runs on a thread here."""
        if not getattr(fn, "remote_job", False):
            return super().submit(name, fn, *args, owner=owner, resource=resource, meta=meta,
                                  **kwargs)
        at = _settings_at(args)
        device = getattr(args[at], "device", None) if at is not None else None
        job = RemoteJob(name=name, owner=owner, resource="ray",
                        meta={**(meta or {}), "backend": "ray"}, _on_cancel=self._cancel_remote,
                        _wants_gpu=str(resource).startswith("cuda") or
                        (at is not None and (device is None or str(device).startswith("cuda"))))
        job._spec = {"id": job.id, "name": name, "fn": f"{fn.__module__}:{fn.__qualname__}",
                     "args": args, "kwargs": kwargs, "settings_at": at}
        with self._lock:
            if self._closed:
                raise RuntimeError("The job runner has been shut down.")
            self._forget_old()
            self._jobs[job.id] = job
            self._remote[job.id] = job
            self._ensure_reaper()
            if self._bridge is None:
                if time.monotonic() - self._problem_at < RETRY_S:
                    job.error = self.problem
                    self._end(job, FAILED)
                    return job
                self._start_bridge()
            if self._bridge.ready:
                self._send(job)
            self._reposition()
        return job

    def _resources(self, job: RemoteJob) -> tuple[str, float, float]:
        """(label, CPUs, GPU share) for a job, from what the cluster has."""
        cluster = self.cluster or {}
        if job._wants_gpu and cluster.get("gpus", 0) > 0:
            return "gpu", 0.0, self.gpu_share
        biggest = float(cluster.get("max_node_cpus", 1) or 1)
        cpus = self.cpu_per_job or max(1.0, float(int(biggest) // max(1, self.cpu_slots)))
        if cpus > biggest:
            raise ValueError(f"A job asks for {cpus:g} CPUs (DLLAB_CPU_PER_JOB) but the largest "
                             f"node of the Ray cluster has {biggest:g}; lower it.")
        return "cpu", cpus, 0.0

    def _send(self, job: RemoteJob) -> None:
        """Hand a job to the bridge (lock held); it then waits for its resources."""
        spec, job._spec = job._spec, None
        try:
            job.resource, cpus, gpus = self._resources(job)
            payload = {**spec, "num_cpus": cpus, "num_gpus": gpus}
            pickle.dumps(payload)   # a job whose arguments cannot travel fails here, with a sentence
            self._bridge.send("submit", payload)
        except Exception as exc:
            job.error = str(exc) if isinstance(exc, ValueError) else describe_error(exc)
            self._end(job, FAILED)

    def _cancel_remote(self, job: RemoteJob) -> None:
        with self._lock:
            started = job.status == RUNNING
            if not started:     # a waiting job never starts
                self._end(job, CANCELLED)
            if self._bridge is not None and self._bridge.ready:
                try:
                    self._bridge.send("cancel", job.id, job.cancel_reason or CANCEL_USER, started)
                except OSError:
                    pass

    # ------------------------------------------------------------------------------ relaying

    def _on_events(self, news: dict[str, dict]) -> None:
        with self._lock:
            for job_id, new in news.items():
                job = self._remote.get(job_id)
                if job is None or not job.is_active:
                    continue
                if new.get("started") and job.status == QUEUED:
                    job.status, job.position, job.started = RUNNING, None, time.time()
                    job.meta["worker"] = dict(new["started"])
                    self._reposition()
                # The worker's "saved" is dropped: this server saves the run, then says so.
                events = [e for e in new.get("events", []) if e.get("kind") != "saved"]
                with job._lock:
                    job._events.extend(events)
                    if "progress" in new:
                        job.progress, job.message = new["progress"], new.get("message", "")

    def _finish_remote(self, job: RemoteJob, outcome: dict[str, Any]) -> None:
        """A task ended: save its run here (if it trained one), then end the job."""
        status = {"done": DONE, "cancelled": CANCELLED}.get(outcome.get("status"), FAILED)
        result, payload = outcome.get("result"), outcome.get("payload")
        if outcome.get("where"):
            job.meta["worker"] = dict(outcome["where"])
        if status == FAILED:
            job.error = outcome.get("error") or "The job stopped on the Ray cluster for no reason given."
            job.detail = outcome.get("detail")
            LOG.warning("Ray job %s failed: %s", job.id[:6], job.error)
        elif payload is not None:
            try:
                from engine.jobs.stores import save_shipped
                info = save_shipped(payload)
                result = {**(result or {}), "run_id": info.id, "metrics": info.metrics}
                job._append({"kind": "saved", "time": time.time(), "run_id": info.id,
                             "status": payload.status})
            except Exception as exc:
                status, job.error, job.detail = FAILED, describe_error(exc), traceback.format_exc()
        job.result = None if status == CANCELLED and job.cancel_reason == CANCEL_UNWATCHED \
            else result
        with self._lock:
            self._end(job, status)

    def _end(self, job: RemoteJob, status: str) -> None:
        """Finish a Ray job here (lock held); later news of it is ignored."""
        if not job.is_active:
            return
        self._remote.pop(job.id, None)
        job._spec = None
        self._finish(job, status)
        self._reposition()

    def _reposition(self) -> None:
        """Queue positions of the waiting Ray jobs, per resource, in submission order."""
        ahead: dict[str, int] = {}
        for job in self._remote.values():
            if job.status == QUEUED:
                ahead[job.resource] = ahead.get(job.resource, 0) + 1
                job.position = ahead[job.resource]

    # --------------------------------------------------------------------------- looking up

    def queue_length(self, resource: str = "cpu") -> int:
        """Waiting jobs of a resource: Ray's "gpu" and "cpu" (and "ray": not sent yet), plus this
        server's own threads' "cpu" and "io"."""
        with self._lock:
            remote = sum(1 for j in self._remote.values() if j.status == QUEUED
                         and j.resource == resource)
        return remote + (0 if resource in RAY_LABELS else super().queue_length(resource))

    def running(self, resource: str | None = None) -> list[Job]:
        with self._lock:
            remote = [j for j in self._remote.values() if j.status == RUNNING
                      and (resource is None or j.resource == resource)]
        return (super().running(resource) if resource not in RAY_LABELS else []) + remote

    def reap(self, now: float | None = None) -> list[Job]:
        """The unwatched-job timeout, and a last guard: a cancelled Ray job whose end never
        arrives (force-cancel failed, the bridge is stuck) is ended here."""
        stale = super().reap(now)
        late = time.monotonic() - self.force_after - LATE_S
        with self._lock:
            for job in [j for j in self._remote.values() if j._cancel_at and j._cancel_at < late]:
                self._end(job, CANCELLED)
        return stale

    def shutdown(self, wait: float | None = None) -> None:
        super().shutdown(wait)
        with self._lock:
            bridge, self._bridge = self._bridge, None
            if bridge is not None:
                bridge.ended = True
        if bridge is not None:
            bridge.stop()


__all__ = ["RayJobRunner", "RemoteJob", "LOST", "LOG"]
