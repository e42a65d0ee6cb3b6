"""Training jobs on Ray (issue 13), against the session's real Ray head (tests/ray/conftest.py):
the same numbers as in-process, fractional GPUs packing four jobs with the fifth in line, a worker
killed mid-training, Cancel within one batch with the cancelled run saved, force-cancel of a job
that does not listen, the unwatched-job timeout, an out-of-memory kill, a cluster that cannot be reached, and a
driver that is lost."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from engine import jobs
from engine.jobs.ray_runner import LOST, RayJobRunner
from engine.jobs.ray_worker import STOPPING
from engine.jobs.run_jobs import train_job
from engine.runs import load_run
from engine.settings import settings_for
from tests.ray.ray_jobs import gated_job, hungry_job, stubborn_job

pytestmark = pytest.mark.slow
OWNER = "ray-test-owner-token-1"


@pytest.fixture(autouse=True)
def appdata(tmp_path, monkeypatch):
    """Each test's own run store (the server saves the runs its Ray jobs train)."""
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path / "appdata"))


@pytest.fixture
def runner(ray_cluster):
    r = RayJobRunner(ray_cluster, reap_every=0.05)
    yield r
    r.shutdown(wait=30)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def batches(job) -> int:
    return sum(e["kind"] == "batch" for e in job.events())


def test_digits_on_ray_give_the_in_process_numbers(runner, digits):
    s = settings_for("digits", folder=str(digits), epochs=2)
    local = jobs.JobRunner()
    try:
        here = local.submit("train", train_job, s, OWNER)
        assert here.wait(120) and here.status == jobs.DONE, here.error
    finally:
        local.shutdown()
    there = runner.submit("train", train_job, s, OWNER, meta={"kind": "train"})
    assert there.wait(180) and there.status == jobs.DONE, (there.error, there.detail)
    assert there.meta["kind"] == "train" and there.meta["backend"] == "ray"
    metrics = ("train_loss", "valid_loss", "error_rate", "accuracy")
    assert [[e[k] for k in metrics] for e in there.result["epochs"]] == \
        [[e[k] for k in metrics] for e in here.result["epochs"]]
    a, b = load_run(here.result["run_id"]), load_run(there.result["run_id"])
    assert b.info.metrics == a.info.metrics and b.items == a.items and b.classes == a.classes
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.losses, b.losses)
    assert (a.info.backend, b.info.backend) == ("in-process", "ray")
    assert b.info.pid == there.meta["worker"]["pid"] != os.getpid() and b.info.host
    assert b.settings["folder"] == str(digits)        # the server's folder, not the worker's copy
    assert [e["kind"] for e in there.events()][-1] == "saved"   # said once the server saved it
    ck = b.load_model()
    assert ck.classes == a.classes and ck.meta["metrics"] == a.load_model().meta["metrics"]


def test_a_quarter_gpu_each_packs_four_jobs_and_the_fifth_waits_first_in_line(ray_cluster, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("DLLAB_GPU_SHARE", "0.25")
    r = RayJobRunner(ray_cluster)
    gates = [tmp_path / f"gate{i}" for i in range(5)]
    try:
        js = [r.submit(f"g{i}", gated_job, str(g), i, resource="cuda", owner=f"o{i}")
              for i, g in enumerate(gates)]
        wait_until(lambda: sum(j.status == jobs.RUNNING for j in js) == 4, 90, "four running")
        time.sleep(1.0)   # the fifth stays in line while the four hold the GPU
        assert [j.status for j in js] == [jobs.RUNNING] * 4 + [jobs.QUEUED]
        assert js[4].position == 1 and js[4].resource == "gpu" and r.queue_length("gpu") == 1
        assert len({j.meta["worker"]["pid"] for j in js[:4]}) == 4   # four worker processes
        gates[0].touch()
        assert js[0].wait(30) and js[0].result["value"] == 0
        wait_until(lambda: js[4].status == jobs.RUNNING, 60, "the fifth to start")
        assert js[4].position is None
        for g in gates:
            g.touch()
        assert all(j.wait(30) and j.status == jobs.DONE for j in js)
        assert [j.result["value"] for j in js] == [0, 1, 2, 3, 4]
    finally:
        for g in gates:
            g.touch()
        r.shutdown(wait=30)


def test_a_worker_killed_mid_training_fails_its_job_only(runner, digits):
    s = settings_for("digits", folder=str(digits), epochs=40)
    job = runner.submit("train", train_job, s, OWNER)
    wait_until(lambda: batches(job) >= 5, 120, "training to start")
    pid = job.meta["worker"]["pid"]
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    assert job.wait(60) and job.status == jobs.FAILED
    assert job.error.startswith("The worker training this run stopped unexpectedly")
    assert runner.problem is None
    nxt = runner.submit("train", train_job, s.with_(epochs=1), OWNER)
    assert nxt.wait(120) and nxt.status == jobs.DONE, nxt.error
    assert nxt.meta["worker"]["pid"] != pid and load_run(nxt.result["run_id"]).info.backend == "ray"


def test_cancel_stops_within_one_batch_and_the_cancelled_run_is_saved(runner, digits):
    s = settings_for("digits", folder=str(digits), epochs=40)
    job = runner.submit("train", train_job, s, OWNER, owner=OWNER)
    wait_until(lambda: any(e["kind"] == "epoch" for e in job.events()), 120, "a finished epoch")
    assert runner.cancel(job.id, owner=OWNER)
    assert job.wait(60) and job.status == jobs.CANCELLED and job.cancel_reason == jobs.CANCEL_USER
    kinds = [e["kind"] for e in job.events()]
    stop = next(i for i, e in enumerate(job.events())
                if e["kind"] == "stage" and e["message"] == STOPPING)
    assert kinds[stop:].count("batch") <= 1          # at most the batch already under way
    assert job.result["cancelled"] and kinds[-1] == "saved"
    run = load_run(job.result["run_id"])
    assert run.info.status == "cancelled" and run.info.backend == "ray" and run.info.epochs >= 1


def test_a_job_that_ignores_cancel_is_force_cancelled(ray_cluster, monkeypatch):
    monkeypatch.setenv("DLLAB_RAY_FORCE_S", "1")
    r = RayJobRunner(ray_cluster)
    try:
        job = r.submit("stubborn", stubborn_job, 120.0, owner="o")
        wait_until(lambda: job.status == jobs.RUNNING, 60, "the job to start")
        t0 = time.monotonic()
        job.cancel()
        assert job.wait(30) and job.status == jobs.CANCELLED
        assert time.monotonic() - t0 < 15
        assert r.problem is None
    finally:
        r.shutdown(wait=30)


def test_a_ray_job_nobody_watches_is_cancelled(ray_cluster, tmp_path):
    r = RayJobRunner(ray_cluster, watch_timeout=1.0, reap_every=0.1)
    try:
        job = r.submit("g", gated_job, str(tmp_path / "never"), owner="gone")
        while job.status != jobs.RUNNING:        # watched while it starts, then the tab closes
            job.touch()
            assert job.is_active
            time.sleep(0.05)
        assert job.wait(30) and job.status == jobs.CANCELLED
        assert job.cancel_reason == jobs.CANCEL_UNWATCHED and job.result is None
    finally:
        r.shutdown(wait=30)


def test_an_out_of_memory_kill_says_so(monkeypatch):
    """A private `local` instance whose memory monitor stops tasks 12 points above today's use:
    a job that keeps taking memory is stopped by Ray, and the job says the machine ran out."""
    meminfo = dict(line.split(":") for line in open("/proc/meminfo").read().splitlines())
    total, free = (int(meminfo[k].split()[0]) for k in ("MemTotal", "MemAvailable"))
    if free / total < 0.3:
        pytest.skip("needs 30 % of the memory free to stay far from the kernel's OOM killer")
    threshold = round(1 - free / total + 0.12, 2)
    monkeypatch.setenv("RAY_memory_usage_threshold", str(threshold))
    r = RayJobRunner("local")
    try:
        job = r.submit("hungry", hungry_job, max(50, int(total * 0.03 / 1024)), 40, owner="o")
        assert job.wait(120) and job.status == jobs.FAILED, job.status
        assert job.error.startswith("The machine training this run ran out of memory")
        assert r.problem is None
    finally:
        r.shutdown(wait=30)


def test_a_cluster_that_cannot_be_reached_is_a_sentence_and_threads_keep_working(caplog, digits):
    from tests.browser.conftest import free_port

    r = RayJobRunner(f"127.0.0.1:{free_port()}", connect_timeout=2)
    try:
        job = r.submit("train", train_job, settings_for("digits", folder=str(digits)), OWNER)
        assert job.wait(30) and job.status == jobs.FAILED
        assert "did not answer within 2 s" in job.error and job.error == r.problem
        assert "DLLAB_RAY_ADDRESS" in r.problem
        again = r.submit("train", train_job, settings_for("digits", folder=str(digits)), OWNER)
        assert again.status == jobs.FAILED and again.error == r.problem   # no second wait
        other = r.submit("io", lambda ctx: "still here")     # a download-like job: a thread
        assert other.wait(10) and other.result == "still here"
    finally:
        r.shutdown(wait=10)


def test_a_driver_without_the_clusters_token_is_refused(ray_cluster, digits, tmp_path,
                                                       monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("HOME", str(tmp_path))            # no ~/.ray/auth_token either
    for mode in ("token", None):                          # token mode with no token; no mode at all
        if mode is None:
            monkeypatch.delenv("RAY_AUTH_MODE")
        r = RayJobRunner(ray_cluster, connect_timeout=60)
        try:
            job = r.submit("train", train_job, settings_for("digits", folder=str(digits)), OWNER)
            assert job.wait(90) and job.status == jobs.FAILED and job.error == r.problem
            assert job.error.startswith(f"Could not connect to the Ray cluster at {ray_cluster}")
            assert "token" in job.error
        finally:
            r.shutdown(wait=10)


def test_a_lost_driver_fails_its_jobs_with_a_sentence_and_the_next_job_reconnects(runner, tmp_path):
    gate = tmp_path / "gate"
    job = runner.submit("g", gated_job, str(gate), 1, owner="o")
    wait_until(lambda: job.status == jobs.RUNNING, 90, "the job to start")
    os.kill(runner._bridge.proc.pid, signal.SIGKILL)
    assert job.wait(30) and job.status == jobs.FAILED and job.error == LOST == runner.problem
    gate.touch()
    nxt = runner.submit("g", gated_job, str(gate), 2, owner="o")
    assert nxt.wait(90) and nxt.status == jobs.DONE and nxt.result["value"] == 2
    assert runner.problem is None
