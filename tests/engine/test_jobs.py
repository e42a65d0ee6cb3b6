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


# ------------------------------------------------------------------ the Ray backend's parts (issue 13)
# Without a cluster: the data set packing and the worker's cache, the run payload a worker sends
# back, the job board, where a run trained, and the sentences for Ray's errors. The backend itself
# runs against a real Ray head in tests/ray/.


def _image_folder(root, n_per_class: int = 6):
    """Two classes of small coloured squares, as PNG files in class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            img = np.clip(np.full((12, 12, 3), colour) + rng.integers(-20, 20, (12, 12, 3)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_pack_is_keyed_by_content_and_unpacks_once_per_key(tmp_path, monkeypatch):
    import os
    import shutil

    from engine.jobs import datapack

    monkeypatch.setenv("DLLAB_RAY_CACHE", str(tmp_path / "cache"))
    a = _image_folder(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    os.utime(b / "red" / "0.png", (1, 1))                 # other times, same content
    pa, pb = datapack.pack_folder(a), datapack.pack_folder(b)
    assert pa.key == pb.key and pa.data == pb.data and pa.n_files == 12
    assert datapack.signature(a) != datapack.signature(b)  # the cheap check still sees the change
    assert datapack.cached(pa.key) is None
    folder = datapack.unpack(pa.key, pa.data)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == \
        sorted(p.relative_to(a).as_posix() for p in a.rglob("*.png"))
    assert (folder / "red" / "3.png").read_bytes() == (a / "red" / "3.png").read_bytes()
    assert datapack.cached(pa.key) == folder and datapack.unpack(pa.key, pa.data) == folder
    (a / "red" / "0.png").write_bytes(b"changed")
    assert datapack.pack_folder(a).key != pa.key


def test_a_damaged_or_hostile_pack_is_refused(tmp_path, monkeypatch):
    import hashlib
    import io
    import tarfile

    from engine.jobs import datapack

    monkeypatch.setenv("DLLAB_RAY_CACHE", str(tmp_path / "cache"))
    pack = datapack.pack_folder(_image_folder(tmp_path / "a"))
    with pytest.raises(datapack.PackError, match="damaged"):
        datapack.unpack(pack.key, pack.data[:-10])
    for bad in ("../x", "a" * 63, "G" * 64):
        with pytest.raises(datapack.PackError, match="64 hexadecimal"):
            datapack.cached(bad)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:   # a name that climbs out of the folder
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    data = buf.getvalue()
    with pytest.raises(tarfile.TarError):
        datapack.unpack(hashlib.sha256(data).hexdigest(), data)
    assert not (tmp_path / "cache" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []   # no half folder left


def test_the_worker_cache_drops_the_least_recently_used_data_set(tmp_path, monkeypatch):
    import os

    from engine.jobs import datapack

    monkeypatch.setenv("DLLAB_RAY_CACHE", str(tmp_path / "cache"))
    keys = []
    for i in range(3):
        pack = datapack.pack_folder(_image_folder(tmp_path / f"d{i}", n_per_class=2 + i))
        folder = datapack.unpack(pack.key, pack.data)
        os.utime(folder, (100 + i, 100 + i))
        keys.append(pack.key)
    size = sum(f.stat().st_size for f in (tmp_path / "cache" / keys[2]).rglob("*") if f.is_file())
    assert datapack.trim(keep=keys[0], max_bytes=size * 2) == [keys[1]]   # oldest kept: in use
    assert datapack.cached(keys[0]) and datapack.cached(keys[1]) is None and datapack.cached(keys[2])


def test_a_run_shipped_from_a_worker_is_saved_as_save_run_saves_it(tmp_path, monkeypatch):
    import os
    import shutil

    import numpy as np

    from engine.data import DataConfig, build_dataloaders
    from engine.jobs.stores import RunPayload, ShippingRunStore, save_shipped
    from engine.runs import load_run, save_run

    monkeypatch.setenv("DLLAB_DATA", str(tmp_path / "appdata"))
    server = _image_folder(tmp_path / "server" / "colours")
    worker = tmp_path / "worker" / "key"
    shutil.copytree(server, worker)                      # the worker's unpacked copy
    dls = build_dataloaders(worker, DataConfig(size=16, bs=4, augment=False))
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", 2, pretrained=False), dls, device="cpu")
    learn.fit_one_cycle(1, 1e-3)
    fields = dict(owner="owner-token-1234567890", data_name="colours",
                  settings={"folder": str(worker), "arch": "simple_cnn"}, history={"epochs": []},
                  status="done")
    store = ShippingRunStore(str(server), str(worker))
    provisional = store.save(learn, **fields)
    assert provisional.id == "" and isinstance(store.payload, RunPayload)
    shipped = load_run(save_shipped(store.payload).id)
    here = load_run(save_run(learn, **fields).id)
    assert shipped.items == [(str(server / rel), y) for rel, y in store.payload.items]
    assert [(os.path.relpath(p, server), y) for p, y in shipped.items] == \
        [(os.path.relpath(p, worker), y) for p, y in here.items]
    assert np.array_equal(shipped.probs, here.probs) and shipped.info.metrics == here.info.metrics
    assert shipped.settings["folder"] == str(server)
    a, b = shipped.load_model(), here.load_model()
    assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    assert {k: v for k, v in a.meta.items() if k not in ("run_id", "settings")} == \
        {k: v for k, v in b.meta.items() if k not in ("run_id", "settings")}
    assert (shipped.info.backend, here.info.backend) == ("ray", "in-process")
    assert here.info.pid == os.getpid() and shipped.info.pid == store.payload.pid


def test_run_info_says_where_it_trained_and_refuses_odd_values():
    from engine.runs import RunInfo

    base = {"id": "x" * 22, "owner": "o", "created": 1.0, "classes": ["a", "b"], "metrics": {}}
    old = RunInfo.from_dict(base)                        # a run saved before issue 13
    assert (old.backend, old.host, old.pid) == ("in-process", "", 0)
    new = RunInfo.from_dict({**base, "backend": "ray", "host": "gpu-1.lab", "pid": 4242})
    assert (new.backend, new.host, new.pid) == ("ray", "gpu-1.lab", 4242)
    for odd in ({"backend": "slurm"}, {"host": "<script>"}, {"pid": -1}, {"pid": True},
                {"pid": "12"}):
        with pytest.raises(ValueError):
            RunInfo.from_dict({**base, **odd})


def test_the_job_board_relays_once_and_cancel_wakes_a_waiting_poll():
    import asyncio

    from engine.jobs.ray_worker import JobBoard

    async def scenario():
        board = JobBoard()
        assert await board.wait_cancel("gone", 0.01) == ""          # not on the board
        assert await board.started("j", {"host": "h", "pid": 1}) is False
        await board.push("j", [{"kind": "a"}], 0.5, "half")
        first = await board.drain()
        assert first == {"j": {"events": [{"kind": "a"}], "progress": 0.5, "message": "half",
                               "started": {"host": "h", "pid": 1}}}
        assert await board.drain() == {}                            # relayed once
        assert await board.wait_cancel("j", 0.01) is None           # no Cancel yet
        waiter = asyncio.ensure_future(board.wait_cancel("j", 30))
        await asyncio.sleep(0.01)
        await board.cancel("j", "Stopped because no page watched it.")
        assert await asyncio.wait_for(waiter, 1) == "Stopped because no page watched it."
        assert await board.started("late", {}) is False
        await board.cancel("queued", jobs.CANCEL_USER)
        assert await board.started("queued", {}) is True            # cancelled before it ran
        await board.forget("j")
        assert await board.wait_cancel("j", 0.01) == ""

    # On a thread of its own: Playwright's sync API keeps an event loop running on this one when
    # browser tests ran earlier in the session.
    failure = []
    worker = threading.Thread(target=lambda: failure.extend(_run_to_exception(scenario)))
    worker.start()
    worker.join(30)
    assert not worker.is_alive() and failure == [], failure


def _run_to_exception(make) -> list[BaseException]:
    import asyncio
    try:
        asyncio.run(make())
    except BaseException as exc:  # handed to the test's thread
        return [exc]
    return []


def test_ray_errors_become_sentences():
    import ray.exceptions as rex

    from engine.jobs.ray_bridge import sentence_for

    status, text = sentence_for(rex.WorkerCrashedError(), forced=False)
    assert status == "failed" and text.startswith("The worker training this run stopped unexpectedly")
    assert sentence_for(rex.WorkerCrashedError(), forced=True) == ("cancelled", None)
    assert sentence_for(rex.TaskCancelledError(), forced=False) == ("cancelled", None)
    status, text = sentence_for(rex.OutOfMemoryError("Task was killed due to the node running "
                                                      "low on memory."), forced=False)
    assert status == "failed" and "ran out of memory" in text
    assert "Ray node" in sentence_for(rex.NodeDiedError("node gone"), forced=False)[1]


def test_the_backend_follows_dllab_ray_address(monkeypatch):
    from engine.jobs.run_jobs import lr_find_job, train_job

    monkeypatch.delenv("DLLAB_RAY_ADDRESS", raising=False)
    r = jobs.make_runner()
    try:
        assert type(r) is jobs.JobRunner and r.backend == "in-process" and r.problem is None
    finally:
        r.shutdown()
    monkeypatch.setenv("DLLAB_RAY_ADDRESS", "  ")
    assert jobs.ray_address() is None
    monkeypatch.setenv("DLLAB_RAY_ADDRESS", "local")
    assert jobs.ray_address() == "local"
    assert train_job.remote_job and lr_find_job.remote_job   # the run jobs may go to Ray
    from engine.jobs.download_jobs import pets_job
    assert not getattr(pets_job, "remote_job", False)        # downloads stay on the server
