"""Background jobs: the runner (engine.jobs.runner) and what runs in it — the LR finder and
training of one run (engine.jobs.run_jobs), and data downloads (engine.jobs.download_jobs).
`make_runner()` picks the backend (engine.jobs.backend): threads of the server, or a Ray cluster
(engine.jobs.ray_runner, with its driver in engine.jobs.ray_bridge and the worker side in
engine.jobs.ray_worker).

`from engine import jobs` gives the runner's names, as it did when this was one module.
"""
from engine.jobs.runner import (CANCEL_SHUTDOWN, CANCEL_UNWATCHED, CANCEL_USER, CANCELLED, DONE,
                                FAILED, FINISHED, OOM_ADVICE, QUEUED, RUNNING, STATUSES, Job,
                                JobCancelled, JobContext, JobRunner, describe_error,
                                release_memory, remote_job, resource_for)
from engine.jobs.backend import make_runner, ray_address

__all__ = ["Job", "JobContext", "JobRunner", "JobCancelled", "QUEUED", "RUNNING", "DONE", "FAILED",
           "CANCELLED", "FINISHED", "STATUSES", "resource_for", "describe_error", "release_memory",
           "remote_job", "make_runner", "ray_address", "OOM_ADVICE", "CANCEL_USER",
           "CANCEL_UNWATCHED", "CANCEL_SHUTDOWN"]
