"""engine.jobs.run_jobs with precompute: a job that asks for it trains the same model as the long way
(EfficientNet-Lite0 with its bundled ImageNet weights, tiny images), records it in the saved run,
reports the feature computation as progress, and says why when it cannot apply; the page's cheap
rule (precompute_reason) agrees with engine.precompute.why_not on the Learners the job builds."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine import settings as run_settings
from engine.jobs import run_jobs
from engine.training import Learner
from engine.jobs import JobCancelled
from engine.precompute import why_not
from engine.runs import load_run

OWNER = "a" * 22


class Ctx:
    """What engine.jobs hands a job function, recording every event and progress message."""

    def __init__(self, cancel_after_precompute: int | None = None):
        self.log: list[dict] = []
        self.messages: list[str] = []
        self.cancelled = False
        self._cancel_after = cancel_after_precompute
        self.job = self        # train_job reads ctx.job.events()

    def emit(self, kind: str, **data) -> None:
        self.log.append({"kind": kind, **data})
        if kind == "precompute" and self._cancel_after is not None:
            n = sum(1 for e in self.log if e["kind"] == "precompute")
            self.cancelled = n >= self._cancel_after

    def progress(self, fraction: float, message: str = "") -> None:
        self.messages.append(message)

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled()

    def events(self) -> list[dict]:
        return list(self.log)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.log if e["kind"] == kind]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of 12 small PNGs each (reddish and bluish noise), and a private data dir."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tinyset")
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (root / name).mkdir()
        for i in range(12):
            img = np.clip(np.array(colour) + rng.normal(0, 40, (20, 20, 3)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module", autouse=True)
def data_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DLLAB_DATA", str(tmp_path_factory.mktemp("appdata")))
    yield
    mp.undo()


def spec_for(folder, **kw) -> run_settings.RunSettings:
    # train_bn=False: the long way keeps the frozen body's batch norm fixed too, so precompute is
    # the same model. With fastai's default (train_bn=True) the long way adapts the body's
    # statistics to the data: see test_precompute_with_train_bn_freezes_batch_norm_and_says_so.
    base = dict(folder=str(folder), data_name="tiny", arch="efficientnet_lite0", pretrained=True,
                size=32, bs=8, valid_pct=0.25, seed=5, augment=False, method="fit_one_cycle",
                epochs=2, lr=1e-2, device="cpu", train_bn=False)
    base.update(kw)
    return run_settings.RunSettings(**base)


def train_job(ctx, settings):
    """The training job as the page submits it, saving the run for OWNER."""
    return run_jobs.train_job(ctx, settings, OWNER)


def head_state(run_id: str) -> dict:
    return load_run(run_id).load_model().model.head.state_dict()


@pytest.fixture(scope="module", autouse=True)
def on_features_calls():
    """How many times the Learner switched to training on cached features (per test)."""
    calls = []
    real = Learner._on_features

    def spy(learner):
        calls.append(learner)
        return real(learner)

    mp = pytest.MonkeyPatch()
    mp.setattr(Learner, "_on_features", spy)
    yield calls
    mp.undo()


@pytest.fixture(scope="module")
def pair(folder, on_features_calls):
    """The same fit_one_cycle job, the long way and with precompute (and on_features entries)."""
    out = {}
    for pre in (False, True):
        ctx = Ctx()
        n0 = len(on_features_calls)
        res = train_job(ctx, spec_for(folder, precompute=pre))
        ctx.on_features = len(on_features_calls) - n0
        out[pre] = (res, ctx)
    return out


def test_precompute_job_trains_the_same_model_as_the_long_way(pair):
    (long, ctx_long), (fast, ctx) = pair[False], pair[True]
    assert long["run_id"] and fast["run_id"] and len(fast["epochs"]) == 2
    assert (ctx_long.on_features, ctx.on_features) == (0, 1)   # the fit really ran on features
    a, b = head_state(long["run_id"]), head_state(fast["run_id"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    np.testing.assert_allclose([e["loss"] for e in fast["batches"]],
                               [e["loss"] for e in long["batches"]], rtol=1e-4, atol=1e-5)
    for r1, r2 in zip(long["epochs"], fast["epochs"]):
        assert r2["valid_loss"] == pytest.approx(r1["valid_loss"], rel=1e-4, abs=1e-5)
        assert r2["error_rate"] == r1["error_rate"]
    assert fast["metrics"]["valid_loss"] == pytest.approx(long["metrics"]["valid_loss"], rel=1e-4,
                                                          abs=1e-5)
    # The head alone trained: the body's weights are ImageNet's in both saved models.
    body_a = load_run(long["run_id"]).load_model().model.body.state_dict()
    body_b = load_run(fast["run_id"]).load_model().model.body.state_dict()
    for k in body_a:
        assert torch.equal(body_a[k], body_b[k]), k


def test_the_saved_run_records_whether_precompute_ran(pair):
    long, fast = load_run(pair[False][0]["run_id"]), load_run(pair[True][0]["run_id"])
    assert fast.settings["precompute"] is True and long.settings["precompute"] is False
    assert fast.history["precompute"]["used"] is True and fast.history["precompute"]["seconds"] >= 0
    assert long.history["precompute"] == {"requested": False, "used": False, "reason": None,
                                          "seconds": None}


def test_feature_computation_is_reported_as_progress(pair):
    ctx = pair[True][1]
    stages = [e["message"] for e in ctx.of("stage")]
    assert "Computing body features" in stages
    assert stages.index("Computing body features") < stages.index(
        "Training the head on the cached features")
    counts = [m for m in ctx.messages if m.startswith("Computing body features: ")]
    n = 24   # every training and validation image, counted as one total
    assert counts[-1] == f"Computing body features: {n} / {n}"
    done = [int(m.split(": ")[1].split(" / ")[0]) for m in counts]
    assert done == sorted(done) and done[0] < n
    assert not ctx.of("note")
    assert not [m for m in pair[False][1].messages if m.startswith("Computing")]


def test_fine_tune_job_precomputes_its_frozen_epoch(folder, on_features_calls):
    runs = {}
    for pre in (False, True):
        ctx = Ctx()
        n0 = len(on_features_calls)
        out = train_job(ctx, spec_for(folder, method="fine_tune", epochs=1, freeze_epochs=1,
                                         lr=5e-3, precompute=pre))
        runs[pre] = (out, ctx, len(on_features_calls) - n0)
    (long, _, n_long), (fast, ctx, n_fast) = runs[False], runs[True]
    assert (n_long, n_fast) == (0, 1)        # the frozen epoch only
    assert [r["stage"] for r in fast["epochs"]] == ["frozen", "unfrozen"]
    assert fast["precompute"]["used"] and ctx.of("precompute")
    np.testing.assert_allclose([e["loss"] for e in fast["batches"]],
                               [e["loss"] for e in long["batches"]], rtol=1e-3, atol=1e-4)
    a, b = head_state(long["run_id"]), head_state(fast["run_id"])
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)


def test_lr_finder_job_with_precompute_matches_the_long_way(folder, on_features_calls):
    n0 = len(on_features_calls)
    res = {pre: run_jobs.lr_find_job(Ctx(), spec_for(folder, num_it=10, precompute=pre))
           for pre in (False, True)}
    assert len(on_features_calls) - n0 == 1
    assert res[True]["precompute"]["used"] and not res[False]["precompute"]["used"]
    assert res[True]["lrs"] == res[False]["lrs"]
    np.testing.assert_allclose(res[True]["losses"], res[False]["losses"], rtol=1e-4, atol=1e-5)


def test_precompute_that_cannot_apply_runs_the_long_way_and_says_why(folder):
    ctx = Ctx()
    out = train_job(ctx, spec_for(folder, augment=True, epochs=1, precompute=True))
    assert len(out["epochs"]) == 1 and not ctx.of("precompute")
    assert not any(s.startswith("Computing") for s in ctx.messages)
    notes = [e["message"] for e in ctx.of("note")]
    assert len(notes) == 1 and "augmentation off" in notes[0] and "long way" in notes[0]
    assert out["precompute"]["used"] is False and out["precompute"]["requested"] is True
    run = load_run(out["run_id"])
    assert run.settings["precompute"] is False
    assert "augmentation off" in run.history["precompute"]["reason"]


def test_cancel_while_computing_features_stops_the_job(folder):
    ctx = Ctx(cancel_after_precompute=1)
    with pytest.raises(JobCancelled):
        train_job(ctx, spec_for(folder, precompute=True))
    assert len(ctx.of("precompute")) == 1 and not ctx.of("batch")


# ------------------------------------------------------------------ the page's rule vs why_not


def learner_as_the_job_builds_it(spec: run_settings.RunSettings):
    learn = run_jobs._prepare(Ctx(), spec)
    if spec.method == "fine_tune" and spec.freeze_epochs > 0:
        learn.freeze()   # what fine_tune does before its frozen epochs
    return learn


@pytest.mark.parametrize("changes,applies", [
    ({}, True),
    ({"method": "fine_tune"}, True),
    ({"augment": True}, False),
    ({"method": "fine_tune", "augment": True}, False),
    ({"arch": "simple_cnn", "pretrained": False}, False),
    ({"pretrained": False}, False),
])
def test_precompute_reason_agrees_with_why_not(folder, changes, applies):
    spec = spec_for(folder, **changes)
    rule = run_settings.precompute_reason(spec)
    engine = why_not(learner_as_the_job_builds_it(spec))
    assert (rule is None) == (engine is None) == applies, (rule, engine)


def test_precompute_reason_for_unfreeze_agrees_with_why_not(folder, pair):
    spec = spec_for(folder, method="unfreeze", start_from=pair[False][0]["run_id"])
    assert "Unfreezing" in run_settings.precompute_reason(spec)
    assert why_not(learner_as_the_job_builds_it(spec)) is not None


def test_precompute_reason_sentences():
    spec = run_settings.RunSettings(folder="", arch="efficientnet_lite0", pretrained=True, augment=False)
    assert run_settings.precompute_reason(spec) is None
    assert "augmentation off" in run_settings.precompute_reason(dataclasses.replace(spec, augment=True))
    assert "simple_cnn has no pretrained body" in run_settings.precompute_reason(
        dataclasses.replace(spec, arch="simple_cnn", pretrained=False))
    assert "pretrained" in run_settings.precompute_reason(dataclasses.replace(spec, pretrained=False))
    assert "0 frozen epochs" in run_settings.precompute_reason(
        dataclasses.replace(spec, method="fine_tune", freeze_epochs=0))
    assert run_settings.precompute_reason(dataclasses.replace(spec, method="fine_tune")) is None
    assert run_settings.RunSettings(folder="").precompute is False


def test_live_message_shows_the_feature_count_while_it_is_computed(pair):
    ctx = pair[True][1]
    events = ctx.events()
    first = next(i for i, e in enumerate(events) if e["kind"] == "precompute")
    msg = "Computing body features: 8 / 24"
    assert run_jobs.live_message(events[:first + 1], msg, "Training") == msg
    assert run_jobs.live_message(events, "epoch 2", "Training") == "Training"   # the fit has begun
    assert run_jobs.live_message([], "", "Starting…") == "Starting…"


def test_precompute_with_train_bn_freezes_batch_norm_and_says_so(folder, on_features_calls):
    """RunSettings' default train_bn=True (fastai's): the long way adapts the frozen body's batch
    norm to the data; a precompute run keeps it fixed, says so in a note and in the saved run."""
    runs = {}
    for pre in (False, True):
        ctx = Ctx()
        out = train_job(ctx, spec_for(folder, train_bn=True, epochs=1, precompute=pre))
        runs[pre] = (out, ctx, load_run(out["run_id"]))
    (long, ctx_long, run_long), (fast, ctx, run_fast) = runs[False], runs[True]
    assert fast["precompute"]["used"]
    notes = [e["message"] for e in ctx.of("note")]
    assert len(notes) == 1 and "batch-norm" in notes[0] and "fastai" in notes[0]
    assert not ctx_long.of("note")
    assert run_long.settings["train_bn"] is True and run_fast.settings["train_bn"] is False
    assert run_long.history["training"]["train_bn"] is True
    assert run_fast.history["training"]["train_bn"] is False
    # The body: ImageNet's weights in the precompute run; batch-norm statistics moved the long way.
    body = run_jobs.build_learner(spec_for(folder)).model.body
    pretrained = body.state_dict()
    bn = {n for n, m in body.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    body_long = run_long.load_model().model.body.state_dict()
    body_fast = run_fast.load_model().model.body.state_dict()
    assert all(torch.equal(body_fast[k], v) for k, v in pretrained.items())
    moved = [k for k, v in pretrained.items() if not torch.equal(body_long[k], v)]
    assert any(k.endswith("running_mean") for k in moved)
    assert all(k.rsplit(".", 1)[0] in bn for k in moved)       # only batch norm: convolutions frozen
    # The page's rule and the engine agree on the Learner the job builds for it.
    spec = spec_for(folder, train_bn=True, precompute=True)
    assert run_settings.precompute_reason(spec) is None
    assert "batch-norm" in run_settings.precompute_note(spec)
    assert why_not(learner_as_the_job_builds_it(spec)) is None
    assert run_settings.precompute_note(spec_for(folder, precompute=True)) is None    # train_bn off


def test_the_saved_run_records_precision_groups_and_repeatability(pair):
    run = load_run(pair[False][0]["run_id"])
    assert run.history["training"] == {"precision": "fp32", "train_bn": False,
                                       "param_groups": ["body", "head"], "not_repeatable": None}
    assert pair[False][0]["training"] == run.history["training"]
    assert run.settings["precision"] == "auto"          # what was asked; history: what ran

