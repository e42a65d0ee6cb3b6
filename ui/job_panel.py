"""The job panel: submit a background job for this browser session, watch it, take in its result.

Long work (the LR finder, training, downloads) runs as a job on the process-wide job runner
(engine.jobs.make_runner: threads of this server, or a Ray cluster when DLLAB_RAY_ADDRESS is set);
a page only submits it and watches it in an `st.fragment(run_every=…)` that
redraws on its own, so touching a widget never stops the work. When the job ends, the panel takes
its outcome into the session once (through the page's handler for that kind of job) and reruns the
whole page, which then draws the result statically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import streamlit as st

from engine import jobs
from ui import state

POLL_S = 0.5                     # seconds between redraws of a short job (LR finder, download)
TRAIN_POLL_S = 2.5               # ... of a training run: each redraw takes CPU from training
#                                  (measured: 1 s redraws cost 27 % of digits throughput, 2.5 s ~10 %)


@st.cache_resource(show_spinner=False)
def runner() -> jobs.JobRunner:
    """One queue per server process: jobs of every session wait in it (each job keeps its owner).
    The backend follows DLLAB_RAY_ADDRESS (in-process when unset)."""
    return jobs.make_runner()


def queued(job: jobs.Job) -> None:
    """The job's place in the queue while it waits."""
    if job.status != jobs.QUEUED:
        return
    if job.meta.get("backend") != "ray":
        st.info(f"Waiting for the {'processor' if job.resource == 'cpu' else job.resource}: "
                f"position {job.position} in the queue. Another training is running; this one "
                "starts as soon as it ends.")
    elif job.resource == "ray":   # not handed to the cluster yet
        st.info("Waiting for the Ray cluster to answer (it is starting up or being reached); "
                "this job starts as soon as it does.")
    else:
        what = "a share of a GPU" if job.resource == "gpu" else "free processor cores"
        st.info(f"Waiting for {what} on the Ray cluster: position {job.position} in the queue. "
                "Other trainings are using them; this one starts as soon as one ends.")


def backend_problem(shown: str | None = None) -> None:
    """The backend's sentence while it cannot run jobs (a Ray cluster that cannot be reached);
    `shown`: a sentence the page already shows (a failed job's), not repeated."""
    problem = runner().problem
    if problem and problem != shown:
        st.error(problem)


def cancel_button(job: jobs.Job, label: str, key: str, help: str | None = None) -> None:
    """Cancel this session's job (a Learner stops before its next batch)."""
    st.button(label, key=key, on_click=runner().cancel, args=(job.id, state.owner_token()),
              help=help)


def notes(events: list[dict]) -> list[str]:
    """The sentences a job addressed to the user (note events)."""
    return [e["message"] for e in events if e["kind"] == "note"]


@dataclass(frozen=True)
class JobPanel:
    """One page's background jobs. Each job is tagged with its kind ("download", "lr_find",
    "train"); `on_result[kind](job)` stores a finished job's outcome in the session."""

    job_key: str                                  # session key: id of the session's current job
    consumed_key: str                             # session key: id of the last job taken in
    error_key: str                                # where a failed job's sentence goes
    on_result: Mapping[str, Callable[[jobs.Job], None]] = field(default_factory=dict)
    error_keys: Mapping[str, str] = field(default_factory=dict)   # a kind's own error key

    # ---------------------------------------------------------------------------- the session's job

    def current(self, notice: bool = True) -> jobs.Job | None:
        """This session's job: the one it started, or (after a reload) the owner's running one.
        notice: also say why jobs cannot run now, if the backend cannot (backend_problem)."""
        if notice:
            backend_problem(st.session_state.get(self.error_key))
        owner = state.owner_token()
        job = runner().get(st.session_state.get(self.job_key), owner)
        if job is None or not job.is_active:
            job = runner().active(owner) or job
        if job is not None:
            st.session_state[self.job_key] = job.id
            job.touch()
        return job

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any, resource: str = "cpu") -> None:
        """Queue fn(ctx, *args) as this session's job. (The runner takes submit's own owner=, so a
        job function's owner argument is passed positionally in args.)"""
        job = runner().submit(kind, fn, *args, owner=state.owner_token(), resource=resource,
                              meta={"kind": kind})
        st.session_state[self.job_key] = job.id

    @staticmethod
    def busy(job: jobs.Job | None) -> bool:
        return job is not None and job.is_active

    def taken_in(self, job: jobs.Job) -> bool:
        return st.session_state.get(self.consumed_key) == job.id

    def take_in(self, job: jobs.Job) -> None:
        """Store a finished job's outcome in the session once (the page then draws it
        statically)."""
        if self.taken_in(job):
            return
        st.session_state[self.consumed_key] = job.id
        kind = job.meta.get("kind")
        if job.status == jobs.FAILED:
            st.session_state[self.error_keys.get(kind, self.error_key)] = job.error
            return
        st.session_state.pop(self.error_key, None)
        if job.status == jobs.CANCELLED and job.cancel_reason == jobs.CANCEL_UNWATCHED:
            st.session_state[self.error_key] = job.cancel_reason
        handler = self.on_result.get(kind)
        if handler is not None:
            handler(job)

    # ------------------------------------------------------------------------------- watching

    def live(self, job: jobs.Job | None, kind: str, draw: Callable[[jobs.Job], None], *,
             every: float = POLL_S, until_taken_in: bool = False) -> bool:
        """While the session's job of this kind runs, draw(job) in a fragment redrawn every
        `every` seconds; returns whether it is drawn.

        until_taken_in: draw it until the job has been taken in, not only while it is active. A
        download of refused addresses ends within milliseconds, possibly after the page looked at
        it, and the live fragment is what takes it in and redraws the page.
        """
        if job is None or job.meta.get("kind") != kind:
            return False
        if self.taken_in(job) if until_taken_in else not job.is_active:
            return False
        st.fragment(self._watch, run_every=every)(draw)
        return True

    def _watch(self, draw: Callable[[jobs.Job], None]) -> None:
        """The fragment's body: the session's job, its queue position drawn; a finished job is
        taken in and the whole page redrawn once (the fragment then stops polling)."""
        job = self.current(notice=False)
        if job is None:
            return
        if not job.is_active:
            self.take_in(job)
            st.rerun(scope="app")
        queued(job)
        draw(job)


__all__ = ["POLL_S", "TRAIN_POLL_S", "runner", "queued", "backend_problem", "cancel_button", "notes",
           "JobPanel"]
