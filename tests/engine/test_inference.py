"""engine.inference without HTTP: loading a model from each kind of source, the micro-batcher
(stacked rows equal one-at-a-time predictions; concurrent requests share forward passes), the
answer's shape, and the command line's refusals."""
from __future__ import annotations

import io
import threading
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from engine.export import checkpoint_zip
from engine.images import ImageError, load_image
from engine.inference import (Batcher, ServeError, curl_example, load_model_file, prediction_json,
                              serve_command)
from engine.models import CheckpointError, create_model, save_checkpoint

CLASSES = ["cat", "dog", "fish"]


def jpeg(seed: int, w: int = 64, h: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("simple_cnn", 3, pretrained=False).eval()
    for m in model.modules():   # non-trivial batch-norm statistics, so a mix-up would show
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    return save_checkpoint(path, model, {"classes": CLASSES, "size": 16, "mean": [0.4, 0.5, 0.6],
                                         "std": [0.2, 0.25, 0.3], "run_id": "R" * 22,
                                         "settings": {"data": "pets"}})


def test_a_checkpoint_a_folder_and_an_export_zip_load_the_same_model(ckpt_path, tmp_path):
    zip_path = tmp_path / "export.zip"
    zip_path.write_bytes(checkpoint_zip(ckpt_path, run_id="Z" * 22, data="my pets"))
    loaded = [load_model_file(ckpt_path), load_model_file(ckpt_path.parent), load_model_file(zip_path)]
    x = loaded[0].prepare(jpeg(1))
    assert x.shape == (1, 3, 16, 16)
    outs = [m.checkpoint.model(x) for m in loaded]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=0)
    assert [m.classes for m in loaded] == [CLASSES] * 3
    assert loaded[0].description["run_id"] == "R" * 22 and loaded[0].description["data"] == "pets"
    assert loaded[2].description["run_id"] == "Z" * 22 and loaded[2].description["data"] == "my pets"
    assert loaded[2].description["normalisation"]["std"] == [0.2, 0.25, 0.3]


def test_sources_that_cannot_be_served_are_refused_with_a_sentence(tmp_path):
    with pytest.raises(ServeError, match="There is no model at"):
        load_model_file(tmp_path / "nope.safetensors")
    no_model = tmp_path / "empty.zip"
    with zipfile.ZipFile(no_model, "w") as zf:
        zf.writestr("README.md", "hi")
    with pytest.raises(ServeError, match="has no model.safetensors"):
        load_model_file(no_model)
    pickle = tmp_path / "model.pth"
    pickle.write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model_file(pickle)


def test_prepare_is_the_explorers_preprocessing(ckpt_path):
    from engine.models import preprocess_image

    served = load_model_file(ckpt_path)
    data = jpeg(2, 90, 70)
    meta = served.checkpoint.meta
    expected = preprocess_image(load_image(data), 16, meta["mean"], meta["std"])
    torch.testing.assert_close(served.prepare(data), expected, rtol=0, atol=0)
    with pytest.raises(ImageError, match="not an image"):
        served.prepare(b"hello, not pixels")


def test_stacked_rows_equal_one_forward_per_image_and_requests_share_batches(ckpt_path):
    served = load_model_file(ckpt_path)
    images = [jpeg(i, 40 + i, 30 + 2 * i) for i in range(24)]
    expected = [served.checkpoint.predict(load_image(b))[2] for b in images]   # the Explorer's call
    batcher = Batcher(served, max_batch=8, max_wait_ms=200)
    try:
        start = threading.Barrier(len(images))
        results: list = [None] * len(images)

        def client(i: int) -> None:
            batcher.expect()
            x = served.prepare(images[i])
            start.wait()
            future = batcher.submit(x, expected=True)
            results[i] = future.result(timeout=30)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for got, want in zip(results, expected):
            np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        stats = batcher.stats()
        assert stats["requests"] == 24 and stats["largest_batch"] <= 8
        assert stats["batches"] < 24 and stats["largest_batch"] > 1
    finally:
        batcher.close()


def test_max_batch_one_is_one_forward_per_request_and_a_lone_request_does_not_wait(ckpt_path):
    served = load_model_file(ckpt_path)
    batcher = Batcher(served, max_batch=1, max_wait_ms=5000)
    try:
        import time
        t0 = time.perf_counter()
        futures = [batcher.submit(served.prepare(jpeg(i))) for i in range(5)]
        [f.result(timeout=30) for f in futures]
        # Nobody is decoding (no expect()), so the 5 s wait is never sat out.
        assert time.perf_counter() - t0 < 4
        assert batcher.stats()["batches"] == 5 and batcher.stats()["largest_batch"] == 1
    finally:
        batcher.close()
    with pytest.raises(ServeError, match="at least 1"):
        Batcher(served, max_batch=0)


def test_a_full_queue_is_refused_not_grown(ckpt_path):
    served = load_model_file(ckpt_path)
    batcher = Batcher(served, max_batch=1, max_queue=1)
    gate = threading.Event()
    real = batcher.forward
    batcher.forward = lambda x: (gate.wait(10), real(x))[1]   # hold the model thread
    try:
        x = served.prepare(jpeg(0))
        first = batcher.submit(x)
        deadline = threading.Event()
        while batcher._queue.qsize():   # the model thread has taken the first job
            deadline.wait(0.01)
        batcher.submit(x)
        with pytest.raises(ServeError, match="too many images waiting"):
            batcher.submit(x)
    finally:
        gate.set()
        first.result(timeout=30)
        batcher.close()


def test_the_answer_lists_every_class_highest_first():
    out = prediction_json(["a", "b", "c", "d"], np.array([0.1, 0.4, 0.1, 0.4], np.float32), 0.0123)
    assert out["prediction"] == "b"   # a tie goes to the first class, as argmax does
    assert [p["class"] for p in out["probabilities"]] == ["b", "d", "a", "c"]
    assert out["probabilities"][0]["p"] == pytest.approx(0.4) and out["time_ms"] == 12.3


def test_commands_shown_to_users():
    assert serve_command(run_id="-abc") == "python -m engine.serve --run=-abc"
    assert serve_command(model_path="my model.zip", port=9000) == \
        "python -m engine.serve --model 'my model.zip' --port 9000"
    assert curl_example() == "curl -F file=@photo.jpg http://127.0.0.1:8000/predict"


def test_the_command_line_refuses_a_missing_model_with_one_sentence(tmp_path, capsys):
    from engine.cli.serve import main

    assert main(["--model", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: There is no model at") and "Traceback" not in err
    assert main(["--run", "not-a-run-id"]) == 2
    assert "not a valid run id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "x", "--max-batch", "0"])


def test_the_default_batch_keeps_large_images_in_small_cpu_batches():
    from engine.inference import auto_max_batch

    assert auto_max_batch(16) == 32 and auto_max_batch(224) == 4 and auto_max_batch(112) == 16
    assert auto_max_batch(1024) == 1 and auto_max_batch(224, "cuda") == 32
