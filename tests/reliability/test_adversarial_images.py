"""Issue 18, defect 2: images of extreme shape. A 952-byte PNG of 3 × 2,000,000 pixels passed
load_image; scaling its short side to the model's size made OpenCV allocate tens of GB (Predict,
Grad-CAM, the show_batch preview, decoding for training).

The policy (engine.images.check_shape, applied by load_image before decoding and by
engine.data.resize_crop to any array): a long side over MAX_SIDE pixels, or over MAX_ASPECT times
the short side, is refused with a sentence. Scaling an accepted image to a short side of s then
holds at most MAX_ASPECT·s² pixels. Memory is measured in a subprocess under its own RLIMIT_AS.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from engine.data import DataError, decode_items, resize_crop, verify_images
from engine.data.summary import preview_batch
from engine.images import MAX_ASPECT, MAX_SIDE, ImageError, check_shape, load_image
from engine.settings import RunSettings

ROOT = Path(__file__).resolve().parents[2]
AS_HEADROOM = 1024 ** 3   # the child may map 1 GiB beyond what its imports took (RLIMIT_AS)

#: (width, height) refused, and why (words of the sentence).
REFUSED = [((3, 2_000_000), "20:1"), ((100_000, 3), "20:1"), ((2_000_000, 3), "20:1"),
           ((3, 61), "20:1"), ((1_050, 50), "20:1"), ((20_001, 1_001), "20,000-pixel"),
           ((1_100, 20_001), "20,000-pixel")]
#: Shapes at the edge of the policy, accepted.
ACCEPTED = [(1_200, 60), (60, 1_200), (3, 60), (400, 400)]


def encode(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    """A black image of size (width, height) in fmt (a PNG strip of 3 × 2,000,000 is ~20 kB)."""
    buf = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, size).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def decodes(monkeypatch):
    """Counts Pillow decoding pixel data (ImageFile.load)."""
    calls = []
    original = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


@pytest.mark.parametrize("size,words", REFUSED, ids=lambda v: str(v))
def test_extreme_shapes_are_refused_from_the_header_before_decoding(size, words, decodes):
    with pytest.raises(ImageError, match=words) as err:
        load_image(encode(size))
    assert f"{size[0]}×{size[1]}" in str(err.value) and len(str(err.value)) < 300
    assert decodes == []                                       # no pixel was decoded


@pytest.mark.parametrize("fmt,size", [("GIF", (3, 65_000)), ("BMP", (30_000, 3)),
                                      ("TIFF", (3, 100_000)), ("WEBP", (16_383, 3)),
                                      ("JPEG", (60_000, 8)), ("PNG", (8, 1_000_000))])
def test_every_accepted_format_meets_the_same_policy(fmt, size, decodes):
    with pytest.raises(ImageError, match="limit"):
        load_image(encode(size, fmt))
    assert decodes == []


@pytest.mark.parametrize("size", ACCEPTED, ids=str)
def test_shapes_within_the_policy_still_load_and_scale(size):
    image = load_image(encode(size))
    assert image.shape == (size[1], size[0], 3)
    assert resize_crop(image, 32).shape == (32, 32, 3)


def test_resize_crop_bounds_any_array_it_is_handed():
    """Arrays that did not come through load_image (the policy's second door): strips, empty
    images and sizes outside 8..1024 are an ImageError, never a huge allocation or a ZeroDivision."""
    for shape in [(2_000_000, 3, 3), (3, 100_000, 3), (0, 5, 3), (5, 0, 3), (25_000, 1_300, 3)]:
        with pytest.raises(ImageError):
            resize_crop(np.zeros(shape, np.uint8), 224)
    photo = np.zeros((60, 80, 3), np.uint8)
    for size in (0, 7, 1025, 60_000, -1, True, 2.5):
        with pytest.raises(ImageError, match="outside 8…1024"):
            resize_crop(photo, size)
    assert resize_crop(photo, 1024).shape == (1024, 1024, 3)
    assert check_shape(MAX_SIDE, MAX_SIDE // MAX_ASPECT) is None


def test_training_decode_verify_and_preview_skip_strips_with_their_reason(tmp_path):
    folder = tmp_path / "set"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), (80 * i, 40, 200)).save(folder / cls / f"{i}.png")
    (folder / "a" / "strip.png").write_bytes(encode((3, 2_000_000)))
    (folder / "b" / "wide.png").write_bytes(encode((100_000, 3)))
    bad = dict(verify_images(folder))
    assert sorted(p.name for p in bad) == ["strip.png", "wide.png"]
    assert all("20:1" in reason for reason in bad.values())
    paths = sorted(folder.rglob("*.png"))
    batch, ok, skipped = decode_items(paths, 24, cache=None)
    assert batch.shape == (6, 3, 24, 24) and len(skipped) == 2
    grid = preview_batch(RunSettings(folder=str(folder), size=24), augment=True)
    assert grid.ndim == 3 and grid.dtype == np.uint8


def test_a_preview_of_strips_only_is_a_sentence(tmp_path):
    folder = tmp_path / "strips"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(2):
            (folder / cls / f"{i}.png").write_bytes(encode((3, 2_000_000 - i)))
    for augment in (True, False):
        with pytest.raises(DataError, match=r"None of the \d+ training images.*20:1"):
            preview_batch(RunSettings(folder=str(folder), size=224), augment=augment)


def test_predict_and_grad_cam_refuse_a_strip_array():
    import torch

    from engine import interpret
    from engine.models import Checkpoint, create_model, preprocess_image
    torch.manual_seed(0)
    ckpt = Checkpoint(create_model("simple_cnn", 2, pretrained=False).eval(),
                      {"classes": ["a", "b"], "size": 224, "mean": [0.5] * 3, "std": [0.25] * 3})
    strip = np.zeros((100_000, 3, 3), np.uint8)
    for call in (lambda: ckpt.predict(strip), lambda: interpret.cam_map(ckpt, strip, 0),
                 lambda: interpret.cam_overlay(ckpt, strip, 0, cam=np.zeros((224, 224))),
                 lambda: preprocess_image(strip, 224, [0.5] * 3, [0.25] * 3)):
        with pytest.raises(ImageError, match="20:1"):
            call()


def test_memory_stays_bounded_under_rlimit_as(tmp_path):
    """In a child process limited to its post-import address space + 1 GiB (RLIMIT_AS): the strips
    reach load_image, verify_images, decode_items, the preview, Predict's preprocessing and
    Grad-CAM, and are refused each time; images at the policy's edges (20:1, 20,000 pixels long)
    go all the way to a 1024-pixel model input. Before the fix the first strip alone needed
    ~100 GB here (224 × 149 million pixels)."""
    files = tmp_path / "files"
    folder = tmp_path / "set"
    files.mkdir()
    for name, size in [("tall.png", (3, 2_000_000)), ("wide.png", (100_000, 3))]:
        (files / name).write_bytes(encode(size))
    for name, size in [("edge_aspect.png", (1_200, 60)), ("edge_side.png", (MAX_SIDE, 1_000))]:
        (files / name).write_bytes(encode(size))
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (64, 48), (60 * i, 90, 30)).save(folder / cls / f"{i}.png")
        (folder / cls / "strip.png").write_bytes(encode((3, 2_000_000)))
    code = textwrap.dedent(f"""
        import json, resource
        from pathlib import Path
        import cv2, numpy as np, torch
        torch.set_num_threads(1); cv2.setNumThreads(1)
        from engine import interpret
        from engine.data import decode_items, verify_images
        from engine.data.summary import preview_batch
        from engine.images import ImageError, load_image
        from engine.models import Checkpoint, create_model, preprocess_image
        from engine.settings import RunSettings
        ckpt = Checkpoint(create_model("simple_cnn", 2, pretrained=False).eval(),
                          {{"classes": ["a", "b"], "size": 1024, "mean": [0.5] * 3,
                           "std": [0.25] * 3}})
        vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                  if l.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + {AS_HEADROOM}, vm + {AS_HEADROOM}))
        out = {{"limit_gib": (vm + {AS_HEADROOM}) / 2**30}}
        try:                         # the limit binds: 1.5 GiB more cannot be mapped
            np.ones({AS_HEADROOM} * 3 // 2, np.uint8)
            out["control"] = "allocated"
        except MemoryError:
            out["control"] = "refused"
        files = Path({str(files)!r})
        for name in ("tall.png", "wide.png"):
            try:
                load_image(files / name)
                out[name] = "accepted"
            except ImageError as exc:
                out[name] = str(exc)
        strip = np.zeros((2_000_000, 3, 3), np.uint8)
        for what, call in [("predict", lambda: ckpt.predict(strip)),
                           ("cam", lambda: interpret.cam_map(ckpt, strip, 0)),
                           ("preprocess", lambda: preprocess_image(strip, 224, [0.5] * 3,
                                                                   [0.25] * 3))]:
            try:
                call()
                out[what] = "accepted"
            except ImageError as exc:
                out[what] = str(exc)
        for name in ("edge_aspect.png", "edge_side.png"):
            image = load_image(files / name)
            out[name] = list(preprocess_image(image, 1024, [0.5] * 3, [0.25] * 3).shape)
            out[name + " cam"] = list(interpret.cam_map(ckpt, image, 0).shape)
        folder = Path({str(folder)!r})
        out["verify"] = sorted(p.name for p, _ in verify_images(folder))
        paths = sorted(folder.rglob("*.png"))
        _, ok, bad = decode_items(paths, 224, workers=2, cache=None)
        out["decoded"], out["skipped"] = len(ok), len(bad)
        out["preview"] = list(preview_batch(RunSettings(folder=str(folder), size=224),
                                            augment=True).shape)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLLAB_DATA": str(tmp_path / "data"),
           "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["control"] == "refused", out                  # the limit is real
    for key in ("tall.png", "wide.png", "predict", "cam", "preprocess"):
        assert "20:1 limit" in out[key], (key, out[key])
    assert out["edge_aspect.png"] == [1, 3, 1024, 1024] == out["edge_side.png"]
    assert out["edge_aspect.png cam"] == [1024, 1024] == out["edge_side.png cam"]
    assert out["verify"] == ["strip.png", "strip.png"]
    assert (out["decoded"], out["skipped"]) == (6, 2)
    assert out["preview"][2] == 3
    print(f"RLIMIT_AS {out['limit_gib']:.2f} GiB, peak RSS {out['peak_rss_mb']:.0f} MB")
