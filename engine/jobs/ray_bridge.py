"""The bridge: a child process of the app server that is its Ray driver.

Why a separate process: a Ray driver that loses its cluster is ended by Ray itself ("Failed to
connect to GCS within 60 seconds … The program will terminate"), and connecting to an address
nobody answers blocks for minutes. Neither may happen to the web server, so the server
(engine.jobs.ray_runner) only talks to this process over a socket pair — commands in, job events
and outcomes out — and treats its end as a lost cluster.

What it does: connects (or, for "local", starts a private Ray instance that listens on 127.0.0.1),
creates the job board actor (engine.jobs.ray_worker.JobBoard) on its own node, packs each job's data
set once per content (engine.jobs.datapack), submits the job as a task with the resources the
server chose, relays the board's events every POLL_S, and reports each task's outcome. Cancel is
passed to the board; a running task that has not ended FORCE_S seconds later is force-cancelled
(its worker process is killed).

    python -m engine.jobs.ray_bridge --fd N --address ADDRESS   (started by ray_runner only)
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

POLL_S = 0.1             # seconds between drains of the board
LOST_S = 10.0            # the board unanswered this long: the cluster is lost
CLUSTER_S = 30.0         # seconds between reports of the cluster's resources to the server


def unreachable(address: str, seconds: float) -> str:
    """The sentence for a cluster that did not answer."""
    return (f"The Ray cluster at {address} did not answer within {seconds:.0f} s, so training "
            "cannot start; check DLLAB_RAY_ADDRESS (unset it to train inside the server) and that "
            "this server has the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token).")


def sentence_for(exc: BaseException, forced: bool) -> tuple[str, str | None]:
    """(status, sentence) for a task that ended with a Ray error instead of a result."""
    import ray.exceptions as rex

    text = str(exc)
    if isinstance(exc, rex.TaskCancelledError) or (forced and isinstance(exc, rex.RayError)):
        return "cancelled", None
    if isinstance(exc, rex.OutOfMemoryError) or "out of memory" in text.lower() \
            or "oom" in text.lower().split():
        return "failed", ("The machine training this run ran out of memory, so its worker was "
                          "stopped; lower the batch size or the image size and start again.")
    if isinstance(exc, (rex.NodeDiedError, rex.LocalRayletDiedError, rex.OwnerDiedError,
                        rex.ObjectLostError)):
        return "failed", ("The Ray node training this run was lost (the machine or its Ray "
                          "processes stopped); start the run again.")
    if isinstance(exc, rex.WorkerCrashedError) or isinstance(exc, rex.RaySystemError):
        # The kernel's OOM killer looks like any other kill from here; Ray's own memory monitor
        # (above) usually stops a task first and says so.
        return "failed", ("The worker training this run stopped unexpectedly (its process was "
                          "killed, for example because the machine ran out of memory, or it "
                          "crashed); the server and other jobs are fine — start the run again.")
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        from engine.jobs.runner import describe_error
        return "failed", describe_error(cause)
    return "failed", f"The Ray cluster could not run this job ({type(exc).__name__}: {text[:200]})."


class Bridge:
    """The driver's state: the board, each job's task, the data packs it holds."""

    def __init__(self, conn: Connection, address: str):
        self.conn, self.address = conn, address
        self.send_lock = threading.Lock()
        self.lock = threading.Lock()
        self.tasks: dict[str, Any] = {}          # job id -> ObjectRef of its task
        self.cancelled: dict[str, float] = {}    # job id -> when Cancel reached the bridge
        self.forced: set[str] = set()
        self.packs: OrderedDict[tuple, tuple[str, Any, int]] = OrderedDict()  # signature -> key, ref, size
        # One thread prepares and submits jobs in the order they came (packing a large data set
        # takes a while and must not stop the relay), so Ray sees them first come, first served.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dllab-submit")
        self.force_s = float(os.environ.get("DLLAB_RAY_FORCE_S", "5"))
        self.pack_cap = int(float(os.environ.get("DLLAB_RAY_PACK_MB", "4096")) * 2**20)
        self.board: Any = None
        self.tasks_for: dict[bool, Any] = {}     # GPU job? -> the remote task function
        self.running = True

    def send(self, *message: Any) -> None:
        with self.send_lock:
            self.conn.send(message)

    # ------------------------------------------------------------------------------ connecting

    def connect(self) -> None:
        import ray

        from engine.jobs.ray_worker import JobBoard, run_cpu_task, run_gpu_task
        if self.address == "local":
            # A private instance with this machine's CPUs and GPUs; its processes bind to
            # 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is set before ray is imported).
            ray.init(address="local", include_dashboard=False, log_to_driver=False,
                     namespace="dllab")
        else:
            ray.init(address=self.address, log_to_driver=False, namespace="dllab")
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        here = ray.get_runtime_context().get_node_id()
        self.board = ray.remote(JobBoard).options(
            num_cpus=0, max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        ray.get(self.board.ping.remote(), timeout=60)
        # No retries: a job whose worker died is reported, never silently run a second time.
        self.tasks_for = {False: ray.remote(max_retries=0)(run_cpu_task),
                          True: ray.remote(num_gpus=1, max_retries=0)(run_gpu_task)}
        self.send("ready", self.cluster())

    def cluster(self) -> dict[str, Any]:
        """What the server chooses resources from: the cluster's CPUs and GPUs, its largest node."""
        import ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        total = ray.cluster_resources()
        return {"address": self.address, "gcs": ray.get_runtime_context().gcs_address,
                "cpus": total.get("CPU", 0.0), "gpus": total.get("GPU", 0.0),
                "max_node_cpus": max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0),
                "nodes": len(nodes)}

    # ------------------------------------------------------------------------------ submitting

    def pack(self, job_id: str, folder: str) -> tuple[str, Any]:
        """(key, ObjectRef) of the folder's packed data set, packed again only when it changed;
        the newest packs are kept up to DLLAB_RAY_PACK_MB."""
        import ray

        from engine.jobs import datapack
        sig = (folder, datapack.signature(folder))
        with self.lock:
            if sig in self.packs:
                self.packs.move_to_end(sig)
                return self.packs[sig][:2]
        self.event(job_id, "stage", "Sending the data set to the Ray cluster")
        pack = datapack.pack_folder(folder, max_bytes=self.pack_cap)
        ref = ray.put(pack.data)
        with self.lock:
            self.packs[sig] = (pack.key, ref, len(pack.data))
            while sum(size for _, _, size in self.packs.values()) > self.pack_cap and len(self.packs) > 1:
                self.packs.popitem(last=False)
        return pack.key, ref

    def submit(self, job: dict[str, Any]) -> None:
        """Prepare and submit one job (on the pool: packing a large data set takes a while)."""
        import ray

        from engine.jobs.ray_worker import TaskSpec
        job_id = job["id"]
        try:
            spec = TaskSpec(job_id=job_id, fn=job["fn"], args=tuple(job["args"]),
                            kwargs=dict(job["kwargs"]), settings_at=job.get("settings_at"),
                            cpus=float(job["num_cpus"]), gpu_share=float(job["num_gpus"]))
            box: list = [None, None]
            if spec.settings_at is not None:
                settings = spec.args[spec.settings_at]
                if settings.folder:
                    spec.data_key, box[0] = self.pack(job_id, settings.folder)
                if settings.method == "unfreeze" and settings.start_from:
                    from engine.runs import load_run
                    box[1] = ray.put(load_run(settings.start_from).checkpoint.read_bytes())
            task = self.tasks_for[spec.gpu_share > 0].options(
                num_cpus=spec.cpus, num_gpus=spec.gpu_share, name=f"dllab-{job['name']}-{job_id[:6]}")
            with self.lock:
                if job_id in self.cancelled:    # cancelled while it was being prepared
                    self.send("finished", job_id, {"status": "cancelled"})
                    return
                self.tasks[job_id] = task.remote(spec, box, self.board)
        except Exception as exc:
            from engine.jobs.runner import describe_error
            self.send("finished", job_id, {"status": "failed", "error": describe_error(exc)})

    def event(self, job_id: str, kind: str, message: str) -> None:
        self.send("events", {job_id: {"events": [{"kind": kind, "message": message,
                                                  "time": time.time()}]}})

    def cancel(self, job_id: str, reason: str, started: bool) -> None:
        """Cancel reaches a running job through the board (it stops before its next batch); a
        task still waiting for resources is also withdrawn from Ray's queue (for a running task
        that would raise KeyboardInterrupt inside it, and the run would not be saved)."""
        import ray
        with self.lock:
            self.cancelled.setdefault(job_id, time.monotonic())
            ref = self.tasks.get(job_id)
        self.board.cancel.remote(job_id, reason)
        if ref is not None and not started:
            try:
                ray.cancel(ref, force=False)
            except Exception:
                pass

    # ------------------------------------------------------------------------------ relaying

    def relay(self) -> None:
        import ray
        news = ray.get(self.board.drain.remote(), timeout=LOST_S)
        if news:
            self.send("events", news)

    def collect(self) -> None:
        """Report the tasks that ended (after relaying their last events)."""
        import ray
        with self.lock:
            refs = dict(self.tasks)
        if not refs:
            return
        done, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=0)
        if not done:
            return
        self.relay()
        ended = {ref: job_id for job_id, ref in refs.items() if ref in done}
        for ref, job_id in ended.items():
            try:
                outcome = ray.get(ref)
            except Exception as exc:
                status, error = sentence_for(exc, job_id in self.forced)
                outcome = {"status": status, "error": error, "detail": repr(exc)[:2000]}
            with self.lock:
                self.tasks.pop(job_id, None)
                self.cancelled.pop(job_id, None)
                self.forced.discard(job_id)
            self.send("finished", job_id, outcome)
            self.board.forget.remote(job_id)

    def force(self) -> None:
        """Kill the worker of a cancelled task that has not stopped within force_s seconds."""
        import ray
        now = time.monotonic()
        with self.lock:
            late = [(job_id, self.tasks[job_id]) for job_id, t in self.cancelled.items()
                    if now - t > self.force_s and job_id in self.tasks and job_id not in self.forced]
            self.forced.update(job_id for job_id, _ in late)
        for job_id, ref in late:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass

    def handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "submit":
            self.pool.submit(self.submit, message[1])
        elif kind == "cancel":
            self.cancel(message[1], message[2], message[3])
        elif kind == "shutdown":
            self.running = False

    def serve(self) -> None:
        failing_since, told = None, time.monotonic()
        while self.running:
            try:
                while self.conn.poll(POLL_S if failing_since is None else 1.0):
                    self.handle(self.conn.recv())
            except (EOFError, OSError):
                return   # the server is gone
            try:
                self.relay()
                self.collect()
                self.force()
                if time.monotonic() - told > CLUSTER_S:   # nodes join and leave
                    self.send("cluster", self.cluster())
                    told = time.monotonic()
                failing_since = None
            except Exception as exc:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > LOST_S:
                    self.send("problem", "The Ray cluster stopped answering (" +
                              type(exc).__name__ + "), so the jobs running on it were lost; "
                              "training starts working again once it is back.")
                    return


def _watch_parent(parent: int) -> None:
    """End this process and the Ray processes it started (its process group: the server starts
    it in a session of its own) once the server is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(1)


def _loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    # Ray's connect can hang for minutes and no socket read happens meanwhile: a watchdog ends
    # this process if the server goes, so a bridge is never left behind.
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    conn = Connection(args.fd)
    if args.address == "local" or _loopback(args.address):
        # Ray takes 127.0.0.1 for "this machine's address" and swaps in its network address;
        # this (despite its name) keeps the node on 127.0.0.1, so a private instance listens
        # there only, and a head started on 127.0.0.1 is reached there. Set before ray loads.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    bridge = Bridge(conn, args.address)

    def give_up() -> None:
        bridge.send("problem", unreachable(args.address, args.connect_timeout))
        os._exit(1)   # ray.init is still trying on the main thread

    # ray.init stays on the main thread: a local instance's processes are tied to the thread that
    # starts them (they end when it ends), so the timeout is a timer beside it.
    timer = threading.Timer(args.connect_timeout, give_up)
    timer.daemon = True
    timer.start()
    try:
        bridge.connect()
        timer.cancel()
    except Exception as exc:
        timer.cancel()
        bridge.send("problem", f"Could not connect to the Ray cluster at {args.address} "
                               f"({type(exc).__name__}: {str(exc)[:200]}); check DLLAB_RAY_ADDRESS "
                               "and that this server has the cluster's token (RAY_AUTH_TOKEN or "
                               "~/.ray/auth_token).")
        os._exit(1)   # a half-started local instance is ended by the server (its group)
    try:
        bridge.serve()
    finally:
        import ray
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
