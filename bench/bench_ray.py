"""Training jobs on Ray (issue 13) against the in-process runner, measured in the same run:

- Ray's overhead on the digits default (simple CNN, 16 px, 10 epochs, the run saved): wall time
  from submit to the saved run through a `local` Ray instance ÷ the same through the in-process
  runner (goal ≤ 1.15×); the first Ray job (a cold worker: torch imported, data sent) apart;
- submit → first event from the worker (goal ≤ 2 s), warm and cold;
- four jobs packed on the resources of one (DLLAB_CPU_PER_JOB=0.5 on the two cores here; on a GPU
  machine DLLAB_GPU_SHARE=0.25 is the same idea) against the same four one after another with all
  of them (DLLAB_CPU_PER_JOB=2): total wall time.

Run: .venv/bin/python -m bench.bench_ray   (add --quick for one repeat of each)
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_rows, row

OWNER = "bench-ray-owner-token-1"
STARTED = ("Sending the data set to the Ray cluster",)   # the only events not from the worker


def _timed(runner, settings, owner: str = OWNER) -> tuple[float, float | None, float | None]:
    """(seconds from submit to the saved run, to the worker's first event, to fit_start)."""
    from engine.jobs.run_jobs import train_job

    t0 = time.perf_counter()
    job = runner.submit("train", train_job, settings, owner, owner=owner)
    first = fit = None
    while job.is_active:
        events = job.events()
        if first is None and any(e.get("message") not in STARTED for e in events):
            first = time.perf_counter() - t0
        if fit is None and any(e["kind"] == "fit_start" for e in events):
            fit = time.perf_counter() - t0
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    if job.status != "done":
        raise RuntimeError(f"the benchmark's job ended {job.status}: {job.error}")
    return wall, first, fit


def _wait_ready(runner, timeout: float = 180.0) -> float:
    t0 = time.perf_counter()
    while runner.cluster is None:
        if runner.problem or time.perf_counter() - t0 > timeout:
            raise RuntimeError(runner.problem or "the local Ray instance did not start")
        time.sleep(0.05)
    return time.perf_counter() - t0


def overhead(settings, repeat: int) -> list[dict]:
    from engine.jobs import JobRunner
    from engine.jobs.ray_runner import RayJobRunner

    local = JobRunner()
    ray_runner = RayJobRunner("local")
    try:
        start = _wait_ready(ray_runner)
        cold, cold_first, cold_fit = _timed(ray_runner, settings)
        _timed(local, settings)                       # warm-up: imports, decode cache
        here, there, firsts, fits, local_fits = [], [], [], [], []
        for _ in range(repeat):                       # interleaved: a noisy neighbour hits both
            wall, _, fit = _timed(local, settings)
            here.append(wall)
            local_fits.append(fit)
            wall, first, fit = _timed(ray_runner, settings)
            there.append(wall)
            firsts.append(first)
            fits.append(fit)
    finally:
        local.shutdown()
        ray_runner.shutdown(wait=30)
    base, ray_wall = statistics.median(here), statistics.median(there)
    return [
        row("digits default, in-process (submit → saved run)", base, "s",
            note=f"median of {repeat}"),
        row("digits default via Ray `local`, warm worker", ray_wall, "s", ratio=ray_wall / base,
            baseline="in-process", target="≤ 1.15×", note=f"median of {repeat}"),
        row("digits default via Ray, first job (cold worker, data sent)", cold, "s",
            ratio=cold / base, baseline="in-process", note="once, after the instance is up"),
        row("submit → first event from the worker, warm", statistics.median(firsts), "s",
            target="≤ 2 s", note=f"median of {repeat}"),
        row("submit → first event from the worker, cold", cold_first, "s", target="≤ 2 s",
            note="first job: a new worker process"),
        row("submit → training starts (fit_start), in-process", statistics.median(local_fits), "s",
            note=f"median of {repeat}"),
        row("submit → training starts (fit_start) via Ray, warm", statistics.median(fits), "s",
            note=f"median of {repeat}"),
        row("submit → training starts (fit_start) via Ray, cold", cold_fit, "s",
            note="imports torch, reads the images"),
        row("`local` Ray instance start (bridge ready)", start, "s",
            note="once per server, in the background"),
    ]


def packing(settings, n_jobs: int = 4) -> list[dict]:
    """n_jobs trainings packed on the two cores vs the same one after another with both cores."""
    from engine.jobs.ray_runner import RayJobRunner
    from engine.jobs.run_jobs import train_job

    def round_of(r) -> float:
        t0 = time.perf_counter()
        js = [r.submit("train", train_job, settings, OWNER, owner=OWNER) for _ in range(n_jobs)]
        assert all(j.wait(900) and j.status == "done" for j in js), [j.error for j in js]
        return time.perf_counter() - t0

    out = {}
    # Ray keeps as many idle workers as the node has CPUs; four packed jobs need four warm ones.
    os.environ["RAY_num_workers_soft_limit"] = str(n_jobs)
    try:
        for label, cpus in (("packed", 2 / n_jobs), ("one after another", 2.0)):
            r = RayJobRunner("local", cpu_per_job=cpus)
            try:
                _wait_ready(r)
                round_of(r)          # warm-up: each worker imports torch and decodes the images once
                out[label] = round_of(r)
            finally:
                r.shutdown(wait=30)
    finally:
        os.environ.pop("RAY_num_workers_soft_limit", None)
    return [
        row(f"{n_jobs} digits jobs one after another (2 CPUs each)", out["one after another"], "s"),
        row(f"{n_jobs} digits jobs packed ({2 / n_jobs:g} CPU each, all at once)", out["packed"], "s",
            ratio=out["packed"] / out["one after another"], baseline="one after another",
            note="total wall time of the four, warm workers"),
    ]


def run(quick: bool = False) -> list[dict]:
    from engine.data import digits_folder
    from engine.settings import settings_for

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        os.environ["DLLAB_DATA"] = tmp
        os.environ["DLLAB_RAY_CACHE"] = str(Path(tmp) / "worker-cache")   # the first job unpacks
        folder = digits_folder(Path(tmp) / "digits")
        rows = overhead(settings_for("digits", folder=str(folder)), repeat=1 if quick else 3)
        rows += packing(settings_for("digits", folder=str(folder), epochs=3))
    return rows


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
