"""The export zip's README code, run verbatim in a subprocess whose working folder is a temporary
directory and whose import path excludes this repository, predicts what the engine predicts."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.export import checkpoint_zip
from engine.images import load_image
from engine.models import create_model, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "<b>fish</b>", "bird"]


def photos(folder: Path) -> list[str]:
    """photo.jpg (the README's name) and photos that take the other branches of the preparation:
    enlarged, transparent, EXIF-rotated, palette, greyscale."""
    rng = np.random.default_rng(0)
    smooth = np.clip(np.linspace(0, 255, 120)[None, :, None] + rng.normal(0, 40, (90, 120, 3)), 0, 255)
    Image.fromarray(smooth.astype(np.uint8)).save(folder / "photo.jpg", quality=92)
    Image.fromarray(rng.integers(0, 256, (10, 13, 3), dtype=np.uint8)).save(folder / "tiny.png")
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6   # "rotate 90° clockwise to view"
    Image.fromarray(rng.integers(0, 256, (70, 30, 3), dtype=np.uint8)).save(
        folder / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(rng.integers(0, 256, (33, 44, 3), dtype=np.uint8)).quantize(16).save(
        folder / "palette.png")
    Image.fromarray(rng.integers(0, 256, (50, 60), dtype=np.uint8), "L").save(folder / "grey.png")
    return ["photo.jpg", "tiny.png", "alpha.png", "rotated.jpg", "palette.png", "grey.png"]


def readme_code(readme: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README has no Python block"
    return blocks[0]   # the first one is the portable one


@pytest.mark.parametrize("arch,size", [("simple_cnn", 16), ("efficientnet_lite0", 48), ("resnet18", 40)])
def test_readme_code_predicts_like_the_engine_outside_the_repository(arch, size, tmp_path):
    torch.manual_seed(0)
    model = create_model(arch, len(CLASSES), pretrained=False).eval()
    for m in model.modules():   # batch-norm statistics of a trained model, not the fresh 0 and 1
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = save_checkpoint(tmp_path / "model.safetensors", model,
                           {"classes": CLASSES, "size": size, "mean": [0.485, 0.456, 0.406],
                            "std": [0.229, 0.224, 0.225]})
    work = tmp_path / "elsewhere"
    work.mkdir()
    with zipfile.ZipFile(io.BytesIO(checkpoint_zip(ckpt, run_id="A" * 22, data="pets"))) as zf:
        zf.extractall(work)
        code = readme_code(zf.read("README.md").decode())
    assert not re.search(r"^\s*(import|from)\s+engine\b", code, re.M)
    names = photos(work)
    check = f"""
import importlib.util, sys
assert importlib.util.find_spec("engine") is None, "the repository is importable"
assert not any(p and Path(p).resolve() == Path({str(ROOT)!r}) for p in sys.path)
out = {{}}
for name in {names!r}:
    with torch.inference_mode():
        out[name] = model(prepare(load_photo(name))).softmax(1)[0].tolist()
print("PROBS " + json.dumps(out))
"""
    (work / "predict.py").write_text(code + "\nfrom pathlib import Path\n" + check)
    # -I: no PYTHONPATH, no user site, and not even the script's own folder on sys.path.
    proc = subprocess.run([sys.executable, "-I", "predict.py"], cwd=work, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, *rest = proc.stdout.splitlines()
    got = json.loads(next(line for line in rest if line.startswith("PROBS "))[6:])

    engine_model = load_checkpoint(work / "model.safetensors")
    for name in names:
        label, idx, probs = engine_model.predict(load_image(work / name))
        np.testing.assert_allclose(got[name], probs, atol=1e-5, rtol=0, err_msg=name)
        assert int(np.argmax(got[name])) == idx
        if name == "photo.jpg":   # the README's own print: the class and its probability
            shown, p = first.rsplit(" ", 1)
            assert shown == label and abs(float(p) - probs[idx]) < 1e-5
