"""Background jobs: the runner (engine.jobs.runner) and what runs in it — the LR finder and
training of one run (engine.jobs.run_jobs), and data downloads (engine.jobs.download_jobs).

`from engine import jobs` gives the runner's names, as it did when this was one module.
"""
from engine.jobs.runner import (CANCEL_SHUTDOWN, CANCEL_UNWATCHED, CANCEL_USER, CANCELLED, DONE,
                                FAILED, FINISHED, OOM_ADVICE, QUEUED, RUNNING, STATUSES, Job,
                                JobCancelled, JobContext, JobRunner, describe_error,
                                release_memory, resource_for)

__all__ = ["Job", "JobContext", "JobRunner", "JobCancelled", "QUEUED", "RUNNING", "DONE", "FAILED",
           "CANCELLED", "FINISHED", "STATUSES", "resource_for", "describe_error", "release_memory",
           "OOM_ADVICE", "CANCEL_USER", "CANCEL_UNWATCHED", "CANCEL_SHUTDOWN"]
