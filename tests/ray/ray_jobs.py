"""Job functions the Ray tests run on workers (a worker imports them from here, as it imports
engine.jobs.run_jobs): short gated jobs for packing and cancel, one that reports its process."""
from __future__ import annotations

import os
import time
from pathlib import Path

from engine.jobs import remote_job


@remote_job
def gated_job(ctx, gate: str, value=None):
    """Waits until the file `gate` exists (checking Cancel), then returns value and its pid."""
    ctx.emit("stage", message="waiting for the gate")
    while not Path(gate).exists():
        ctx.check_cancelled()
        time.sleep(0.02)
    return {"value": value, "pid": os.getpid()}


@remote_job
def stubborn_job(ctx, seconds: float):
    """Ignores Cancel (a job that never checks): only force-cancel stops it."""
    ctx.emit("stage", message="not listening")
    time.sleep(seconds)
    return "finished"


@remote_job
def hungry_job(ctx, mb_per_step: int = 200, steps: int = 100):
    """Takes memory step by step (to see what an out-of-memory kill looks like)."""
    held = []
    for _ in range(steps):
        held.append(bytearray(mb_per_step * 2**20))   # touched: zero-filled pages are committed
        ctx.check_cancelled()
        time.sleep(0.2)
    return len(held)
