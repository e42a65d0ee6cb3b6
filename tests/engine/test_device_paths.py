"""The GPU code paths are device-agnostic: autocast, channels_last, batch copies and the batched
loss read-back run on a CPU here (the same functions the CUDA path uses); CPU thread counts follow
the physical cores; one test needs a real CUDA GPU and is skipped without one."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine.models import create_model
from engine.training import (Learner, amp_dtype_for, autocast_for, batch_to_device, physical_cores,
                             set_cpu_threads)


class DLs:
    def __init__(self, train, valid, classes):
        self.train, self.valid, self.classes = train, valid, classes


def blob_dls(n=96, size=16, bs=16, seed=0) -> DLs:
    """Three classes of noisy constant-colour images: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 3, size, size, generator=g) * 0.5
    x[torch.arange(n), y] += 1.5
    train = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(seed))
    return DLs(train, DataLoader(TensorDataset(x[:32], y[:32]), batch_size=bs), ["r", "g", "b"])


def test_amp_dtype_choice_per_device():
    assert amp_dtype_for("cpu") is None and amp_dtype_for(torch.device("mps")) is None
    assert amp_dtype_for("cuda", bf16_supported=True) is torch.bfloat16
    assert amp_dtype_for("cuda:0", bf16_supported=False) is torch.float16   # with a GradScaler


def test_precision_setting_picks_the_autocast_dtype():
    from engine.device import precision_name, repeatability_note, training_dtype
    from engine.settings import FIELD_RULES, PRECISIONS, RunSettings

    assert training_dtype("cpu") is None and training_dtype("cpu", "auto") is None
    assert training_dtype("cpu", mixed_precision=True) is torch.bfloat16
    assert training_dtype("cpu", "bf16") is torch.bfloat16
    assert training_dtype("cpu", "fp16") is torch.float16
    assert training_dtype("cuda", "fp32") is None               # forced off, even on a GPU
    assert training_dtype("mps", "auto") is None
    assert [precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == \
        ["fp32", "bf16", "fp16"]
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16") and RunSettings().precision == "auto"
    assert FIELD_RULES["precision"].choices == PRECISIONS
    with pytest.raises(Exception, match="choose one of auto, fp32, bf16, fp16"):
        RunSettings(precision="fp64")
    assert repeatability_note("cpu") is None
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True
        assert "not bit-repeatable" in repeatability_note("cuda")
        torch.backends.cudnn.benchmark = False
        assert repeatability_note("cuda") is None
    finally:
        torch.backends.cudnn.benchmark = before


def test_fp16_on_a_cpu_trains_with_loss_scaling():
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), blob_dls(), device="cpu",
                    precision="fp16", channels_last=False)
    assert learn.precision == "fp16" and learn.scaler is not None
    before = learn.validate()["valid_loss"]
    learn.fit_one_cycle(1, 1e-2)
    assert learn.history[-1]["valid_loss"] < before


def test_autocast_helper_on_cpu():
    a, b = torch.randn(4, 8), torch.randn(8, 2)
    with autocast_for("cpu", torch.bfloat16):
        assert (a @ b).dtype is torch.bfloat16
    with autocast_for(torch.device("cpu"), None):
        assert (a @ b).dtype is torch.float32


def test_batch_copy_and_channels_last_on_cpu():
    xb, yb = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    x2, y2 = batch_to_device(xb, yb, "cpu", channels_last=True)
    assert x2.is_contiguous(memory_format=torch.channels_last) and torch.equal(x2, xb)
    assert torch.equal(y2, yb)
    feats, _ = batch_to_device(torch.randn(2, 5), yb, "cpu", channels_last=True)   # not an image
    assert feats.shape == (2, 5) and feats.is_contiguous()
    x3, _ = batch_to_device(xb, yb, "cpu")
    assert x3.is_contiguous()


def test_the_cuda_training_path_runs_on_a_cpu():
    """bf16 autocast + channels_last + one loss read-back per 3 batches, forced on a CPU."""
    torch.manual_seed(0)
    events = []
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), blob_dls(), device="cpu",
                    mixed_precision=True, channels_last=True, sync_every=3,
                    on_event=lambda kind, **e: events.append((kind, e)))
    assert learn.amp_dtype is torch.bfloat16 and learn.scaler is None and learn.sync_every == 3
    assert learn.model.body[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    before = learn.validate()["valid_loss"]
    learn.fit_one_cycle(3, 1e-2)
    assert learn.history[-1]["valid_loss"] < before
    # Every batch still gets its event, in order, even though losses are read in bursts.
    steps = [e["step"] for k, e in events if k == "batch"]
    assert steps == list(range(1, 3 * len(learn.dls.train) + 1))
    kinds = [k for k, _ in events]
    assert all(kinds.index("epoch") > i for i, k in enumerate(kinds[:kinds.index("epoch")])
               if k == "batch")
    probs = learn.get_preds().probs
    assert probs.dtype.kind == "f" and abs(probs.sum(1) - 1).max() < 1e-3


def test_defaults_on_a_cpu():
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), blob_dls(), device="cpu")
    assert learn.amp_dtype is None and learn.scaler is None and learn.sync_every == 1
    assert learn.channels_last        # oneDNN's convolutions are faster in NHWC
    assert all(g.get("fused") for g in learn.opt.param_groups)


def test_thread_counts_follow_the_physical_cores():
    before = torch.get_num_threads()
    cores = physical_cores()
    try:
        assert 1 <= cores <= (torch.multiprocessing.cpu_count() or cores)
        assert set_cpu_threads(workers=1) == max(1, cores - 1) == torch.get_num_threads()
        torch.set_num_threads(cores + 3)                  # oversubscribed
        Learner(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3)),
                blob_dls(), device="cpu")
        assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU: checks bf16/fp16 autocast, channels_last, pinned "
                           "non-blocking copies and precompute on the real device")
def test_cuda_end_to_end():
    torch.manual_seed(0)
    dls = blob_dls()
    learn = Learner(create_model("simple_cnn", 3, pretrained=False), dls, device="cuda")
    assert learn.amp_dtype in (torch.bfloat16, torch.float16) and learn.channels_last
    assert learn.precision in ("bf16", "fp16")
    assert learn.sync_every > 1 and torch.backends.cudnn.benchmark
    fp32 = Learner(create_model("simple_cnn", 3, pretrained=False), dls, device="cuda",
                   precision="fp32")
    assert fp32.amp_dtype is None and fp32.precision == "fp32" and fp32.scaler is None
    xb, yb = batch_to_device(*next(iter(dls.train)), "cuda", channels_last=True)
    assert xb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)
    before = learn.validate()["valid_loss"]
    learn.fit_one_cycle(3, 1e-2)
    assert learn.history[-1]["valid_loss"] < before
    learn.freeze()
    learn.fit_one_cycle(1, 1e-2, precompute=True)
    assert learn._features.train.features.is_cuda
