"""engine.jobs: queue order and positions, cancel within one batch, failure isolation, the
unwatched-job timeout, owner isolation, and the old API still working."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine import jobs
from engine.models import create_model
from engine.training import Learner, TrainingError


def gate_job(ctx, gate: threading.Event, value=None):
    """Waits for `gate` (checking cancel), then returns value."""
    while not gate.wait(0.01):
        ctx.check_cancelled()
    return value


@pytest.fixture
def runner():
    r = jobs.JobRunner(cpu_slots=1, gpu_slots=1, watch_timeout=300, reap_every=0.05)
    yield r
    r.shutdown(wait=10)


def test_queue_order_and_positions(runner):
    gates = [threading.Event() for _ in range(4)]
    submitted = [runner.submit(f"j{i}", gate_job, g, i, owner=f"o{i}") for i, g in enumerate(gates)]
    assert submitted[0].status == jobs.RUNNING and submitted[0].position is None
    assert [j.position for j in submitted[1:]] == [1, 2, 3]
    assert all(j.status == jobs.QUEUED for j in submitted[1:])
    # Cancelling a waiting job moves the ones behind it up, and it never starts.
    assert runner.cancel(submitted[2].id, owner="o2")
    assert submitted[2].wait(5) and submitted[2].status == jobs.CANCELLED and submitted[2].started is None
    assert [submitted[1].position, submitted[3].position] == [1, 2]
    gates[0].set()
    assert submitted[0].wait(5) and submitted[0].result == 0
    deadline = time.time() + 5
    while (submitted[1].status, runner.position(submitted[3])) != (jobs.RUNNING, 1) and time.time() < deadline:
        time.sleep(0.01)
    assert submitted[1].status == jobs.RUNNING and submitted[3].position == 1
    gates[1].set()
    gates[3].set()
    assert submitted[3].wait(5) and submitted[3].result == 3
    assert submitted[1].finished <= submitted[3].started        # first come, first served, one at a time


def test_resources_have_their_own_slots(runner):
    gate = threading.Event()
    a = runner.submit("cpu", gate_job, gate, resource="cpu")
    b = runner.submit("gpu", gate_job, gate, resource="cuda")
    c = runner.submit("gpu2", gate_job, gate, resource="cuda:0")
    assert a.status == jobs.RUNNING and b.status == jobs.RUNNING and b.resource == "cuda:0"
    assert c.status == jobs.QUEUED and c.position == 1 and runner.queue_length("cuda") == 1
    gate.set()
    assert c.wait(5) and c.status == jobs.DONE


def test_more_cpu_slots_run_together():
    r = jobs.JobRunner(cpu_slots=2, watch_timeout=300)
    gate = threading.Event()
    a, b, c = (r.submit(n, gate_job, gate) for n in "abc")
    assert (a.status, b.status, c.status, c.position) == (jobs.RUNNING, jobs.RUNNING, jobs.QUEUED, 1)
    gate.set()
    assert c.wait(5)
    r.shutdown()


def test_env_configures_slots_and_timeout(monkeypatch):
    monkeypatch.setenv("DLLAB_CPU_JOBS", "3")
    monkeypatch.setenv("DLLAB_GPU_JOBS", "2")
    monkeypatch.setenv("DLLAB_JOB_WATCH_S", "12.5")
    r = jobs.JobRunner()
    assert (r.cpu_slots, r.gpu_slots, r.watch_timeout) == (3, 2, 12.5)


def test_failure_is_a_sentence_and_does_not_disturb_others(runner):
    def bad(ctx):
        raise TrainingError("Train for at least one epoch.")

    def crash(ctx):
        raise KeyError("boom")

    def oom(ctx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    gate = threading.Event()
    first = runner.submit("ok", gate_job, gate, "fine")
    failing = [runner.submit(n, f) for n, f in (("bad", bad), ("crash", crash), ("oom", oom))]
    last = runner.submit("ok2", gate_job, gate, "also fine")
    gate.set()
    assert last.wait(10)
    assert first.result == "fine" and last.result == "also fine" and last.status == jobs.DONE
    assert [j.status for j in failing] == [jobs.FAILED] * 3
    assert failing[0].error == "Train for at least one epoch."
    assert "KeyError" in failing[1].error and "Traceback" not in failing[1].error
    assert failing[2].error == jobs.OOM_ADVICE and "batch size" in failing[2].error
    assert "Traceback" in failing[1].detail


def test_owner_isolation(runner):
    gate = threading.Event()
    a = runner.submit("a", gate_job, gate, owner="alice")
    b = runner.submit("b", gate_job, gate, owner="bob")
    assert runner.get(a.id, "alice") is a and runner.get(a.id, "bob") is None
    assert runner.active("alice") is a and runner.active("bob") is b
    assert [j.id for j in runner.jobs("bob")] == [b.id]
    assert not runner.cancel(a.id, owner="bob") and a.is_active
    assert runner.active("carol") is None
    gate.set()
    assert b.wait(5)


def test_unwatched_job_is_cancelled_and_its_result_released(runner):
    gate = threading.Event()
    watched = runner.submit("w", gate_job, gate, "kept")
    runner.watch_timeout = 0.3
    waiting = runner.submit("q", gate_job, gate)
    t0 = time.time()
    while time.time() - t0 < 0.8:        # the page of `watched` keeps polling; nobody watches `waiting`
        watched.touch()
        time.sleep(0.05)
    assert waiting.wait(5) and waiting.status == jobs.CANCELLED
    assert waiting.cancel_reason == jobs.CANCEL_UNWATCHED and waiting.started is None
    assert watched.is_active
    gate.set()
    assert watched.wait(5) and watched.result == "kept"

    # A running job that stops being watched is cancelled too.
    never = threading.Event()
    lost = runner.submit("lost", gate_job, never, "x")
    assert lost.wait(5) and lost.status == jobs.CANCELLED and lost.result is None
    assert lost.cancel_reason == jobs.CANCEL_UNWATCHED


def test_reap_directly_with_a_clock(runner):
    gate = threading.Event()
    j = runner.submit("x", gate_job, gate)
    assert runner.reap(now=j.last_seen + 10) == []
    assert runner.reap(now=j.last_seen + 301) == [j]
    assert j.wait(5) and j.status == jobs.CANCELLED


def tiny_dls(n=256, bs=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)

    class D:
        train = DataLoader(TensorDataset(x, y), batch_size=bs)
        valid = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=bs)
        classes = ["a", "b"]
    return D()


def test_cancel_stops_a_training_job_within_one_batch(runner):
    cancelled_at = {}

    def train(ctx):
        learn = Learner(create_model("simple_cnn", 2, pretrained=False), tiny_dls(), device="cpu",
                        on_event=ctx.emit, should_stop=lambda: ctx.cancelled)
        return learn.fit_one_cycle(3, 1e-3)

    job = runner.submit("train", train)
    while not any(e["kind"] == "batch" and e["step"] >= 3 for e in job.events()):
        assert job.is_active
        time.sleep(0.01)
    cancelled_at["n"] = sum(e["kind"] == "batch" for e in job.events())
    job.cancel()
    assert job.wait(30) and job.status == jobs.CANCELLED
    n_after = sum(e["kind"] == "batch" for e in job.events())
    assert n_after - cancelled_at["n"] <= 1          # at most the batch already under way
    assert job.events()[-1]["kind"] == "fit_end" and job.events()[-1]["cancelled"]
    assert job.cancel_reason == jobs.CANCEL_USER


def test_old_api_still_works():
    r = jobs.JobRunner()
    seen = []

    def fn(ctx, a, b=0):
        ctx.emit("tick", value=a + b)
        ctx.progress(0.5, "half")
        seen.append(ctx.cancelled)
        return a * b

    job = r.submit("old", fn, 3, b=4)
    assert job.wait(5) and job.finished_ok and job.result == 12
    assert job.events()[0]["kind"] == "tick" and job.progress == 0.5 and seen == [False]
    r.shutdown()
    with pytest.raises(RuntimeError):
        r.submit("late", fn, 1)


def test_resource_for():
    assert jobs.resource_for(None) == "cpu" and jobs.resource_for("cpu") == "cpu"
    assert jobs.resource_for("cuda") == "cuda:0" and jobs.resource_for(torch.device("cuda", 1)) == "cuda:1"
    assert jobs.resource_for(torch.device("cpu")) == "cpu" and jobs.resource_for("mps") == "mps"


def test_unwatched_job_set_by_env_is_cancelled_and_frees_its_model(monkeypatch):
    """Case 7 of issue 8, the last part: DLLAB_JOB_WATCH_S small, a job that holds a model and a
    32 MB tensor and hands them back when it stops (as training does); nobody watches it. It is
    cancelled after the timeout, and once it has ended nothing keeps its objects alive."""
    import gc
    import weakref

    monkeypatch.setenv("DLLAB_JOB_WATCH_S", "0.3")
    r = jobs.JobRunner(reap_every=0.05)
    refs = []

    def hold(ctx):
        model = create_model("simple_cnn", 2, pretrained=False)
        big = torch.zeros(8_000_000)                     # 32 MB
        refs.extend([weakref.ref(model), weakref.ref(big)])
        while not ctx.cancelled:
            time.sleep(0.01)
        return {"model": model, "big": big}

    try:
        t0 = time.monotonic()
        job = r.submit("hold", hold, owner="gone")
        assert job.wait(10) and job.status == jobs.CANCELLED
        assert job.cancel_reason == jobs.CANCEL_UNWATCHED
        assert 0.3 <= time.monotonic() - t0 < 5
        assert job.result is None and len(refs) == 2
        gc.collect()
        assert [ref() for ref in refs] == [None, None]   # model and tensor freed
    finally:
        r.shutdown(wait=10)
