"""engine.export: the run zip holds the weights, a description and a README, and loads back."""
from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace

import numpy as np
import torch

from engine.export import ZIP_NAMES, checkpoint_zip, run_zip, zip_name
from engine.models import create_model, load_checkpoint, save_checkpoint


def test_zip_loads_back_with_identical_predictions(tmp_path):
    torch.manual_seed(0)
    model = create_model("simple_cnn", 3, pretrained=False).eval()
    ckpt = save_checkpoint(tmp_path / "model.safetensors", model,
                           {"classes": ["<b>cat</b>", "dog", "fish"], "size": 24,
                            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    run = SimpleNamespace(checkpoint=ckpt, info=SimpleNamespace(id="A" * 22, data="my pets/v1",
                                                                arch="simple_cnn"))
    blob = run_zip(run)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert sorted(zf.namelist()) == sorted(ZIP_NAMES)
        zf.extractall(tmp_path / "out")
        desc = json.loads(zf.read("model.json"))
        readme = zf.read("README.md").decode()
    assert desc["classes"] == ["<b>cat</b>", "dog", "fish"] and desc["arch"] == "simple_cnn"
    assert desc["size"] == 24 and desc["normalisation"]["mean"] == [0.5, 0.5, 0.5]
    assert desc["run_id"] == "A" * 22
    assert "load_checkpoint" in readme and "model.safetensors" in readme
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == ckpt.read_bytes()

    original, loaded = load_checkpoint(ckpt), load_checkpoint(tmp_path / "out" / "model.safetensors")
    rng = np.random.default_rng(0)
    for _ in range(3):
        img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
        a, b = original.predict(img), loaded.predict(img)
        assert a[:2] == b[:2]
        np.testing.assert_array_equal(a[2], b[2])
    assert zip_name(run) == "dllab-simple_cnn-my-pets-v1-AAAAAAAA.zip"
    assert checkpoint_zip(ckpt)[:2] == b"PK"


def test_the_readme_states_the_checks_load_checkpoint_makes_on_a_foreign_zip(tmp_path):
    """Issue 18, defect 8: the README tells people to open zips with load_checkpoint; that stays
    safe advice for a zip someone altered — each limit it names is enforced."""
    import pytest
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from engine.data.config import MAX_SIZE, MIN_SIZE
    from engine.images import MAX_ASPECT, MAX_SIDE, ImageError, load_image
    from engine.models import CheckpointError, read_checkpoint_meta

    torch.manual_seed(0)
    model = create_model("simple_cnn", 2, pretrained=False).eval()
    ckpt = save_checkpoint(tmp_path / "model.safetensors", model, {"classes": ["a", "b"], "size": 24})
    with zipfile.ZipFile(io.BytesIO(checkpoint_zip(ckpt))) as zf:
        readme = " ".join(zf.read("README.md").decode().split())
    assert "checks the header before it builds anything" in readme
    assert f"{MIN_SIZE}-{MAX_SIZE} pixels" in readme and f"{MAX_ASPECT} times" in readme
    assert f"{MAX_SIDE:,} pixels" in readme
    for change in ({"size": 60_000}, {"size": MIN_SIZE - 1}, {"mean": [0.5, 0.5]},
                   {"std": [0, 0, 0]}, {"classes": ["a", "b", "c"]}, {"arch": "alexnet"}):
        altered = tmp_path / "altered.safetensors"
        save_file(load_file(str(ckpt)), str(altered),
                  metadata={"dllab": json.dumps({**read_checkpoint_meta(ckpt), **change})})
        with pytest.raises(CheckpointError):
            load_checkpoint(altered)
    strip = io.BytesIO()
    Image.new("RGB", (3, 2_000_000)).save(strip, "PNG")
    with pytest.raises(ImageError, match=f"{MAX_ASPECT}:1"):
        load_image(strip.getvalue())
