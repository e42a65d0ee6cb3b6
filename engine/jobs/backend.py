"""Which backend runs the jobs: DLLAB_RAY_ADDRESS unset is the in-process runner (threads of the
server, zero set-up); "local" starts a private Ray instance on this machine; any other value is the
address of a Ray cluster to join (engine.jobs.ray_runner)."""
from __future__ import annotations

import logging
import os
import sys

from engine.jobs.runner import JobRunner


def ray_address() -> str | None:
    """DLLAB_RAY_ADDRESS, or None for the in-process backend."""
    return (os.environ.get("DLLAB_RAY_ADDRESS") or "").strip() or None


def make_runner(**kwargs) -> JobRunner:
    """The server's job runner, as DLLAB_RAY_ADDRESS says (kwargs go to the runner)."""
    address = ray_address()
    if address is None:
        return JobRunner(**kwargs)
    from engine.jobs.ray_runner import LOG, RayJobRunner
    if not LOG.handlers:   # the backend's sentences belong in the server's log
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s dllab.jobs %(levelname)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False
    return RayJobRunner(address, **kwargs)


__all__ = ["ray_address", "make_runner"]
