"""A trained run as one zip a learner can take away: weights, a description, and how to load them.

    model.safetensors   the checkpoint exactly as the run store saved it (tensors + JSON header)
    model.json          classes in output order, architecture, input size and normalisation
    README.md           loading it with plain PyTorch (engine.portable's code), with
                        engine.models.load_checkpoint, and serving it (engine.serve)
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from engine.data.config import MAX_SIZE, MIN_SIZE
from engine.images import MAX_ASPECT, MAX_SIDE
from engine.models import read_checkpoint_meta
from engine.portable import loading_code, requirements

ZIP_NAMES = ("model.safetensors", "model.json", "README.md")


def model_description(meta: dict[str, Any], *, run_id: str = "", data: str = "") -> dict[str, Any]:
    """What someone needs to use the weights: class order, architecture and preprocessing."""
    return {
        "format": meta.get("format"),
        "run_id": run_id or meta.get("run_id", ""),
        "data": data,
        "arch": meta["arch"],
        "classes": list(meta["classes"]),
        "n_classes": len(meta["classes"]),
        "size": int(meta.get("size", 224)),
        "normalisation": {
            "pixels": "RGB, scaled from 0-255 to 0-1, then (x - mean) / std per channel",
            "mean": list(meta.get("mean", [])),
            "std": list(meta.get("std", [])),
        },
        "resize": "shorter side to size, then the centre square of size x size",
        "metrics": meta.get("metrics", {}),
    }


def _readme(desc: dict[str, Any]) -> str:
    classes = ", ".join(desc["classes"][:12]) + (" …" if len(desc["classes"]) > 12 else "")
    return f"""# A model trained in Deep Learning Lab

Architecture **{desc["arch"]}**, {desc["n_classes"]} classes ({classes}), trained on
`{desc["data"] or "a data folder"}`{f' in run `{desc["run_id"]}`' if desc["run_id"] else ""}.

## What is in this zip

- `model.safetensors` holds the weights. It is a safetensors file: plain tensors plus a JSON header,
  so opening it never runs code (unlike a pickled `.pth`). The header repeats the description below.
- `model.json` is that description on its own: the class names in the order of the model's outputs,
  the input size, and the normalisation the model was trained with.

## Predicting with it, without Deep Learning Lab

Plain PyTorch: nothing from this app is imported. Put this zip's files and a `photo.jpg` in one
folder, `pip install {requirements(desc["arch"])}`, and run:

```python
{loading_code(desc)}```

## Predicting with it in Deep Learning Lab

From the root of the Deep Learning Lab repository:

```python
from engine.images import load_image
from engine.models import load_checkpoint

model = load_checkpoint("model.safetensors")       # rebuilds {desc["arch"]} and loads the weights
label, index, probs = model.predict(load_image("photo.jpg"))
print(label, probs[index])                          # probs has one entry per class, in model.classes order
```

`predict` runs on the CPU by default and prepares the photo the way the validation images were
prepared: shorter side to {desc["size"]} pixels, the centre square, pixels scaled to 0-1, then
normalised with the mean and standard deviation listed in `model.json`. A photo prepared any other
way will still give an answer, just a worse one. Both ways prepare it identically.

`load_checkpoint` checks the header before it builds anything, so a zip from someone else can be
opened this way too: it refuses a file that is not a safetensors checkpoint, an input size outside
{MIN_SIZE}-{MAX_SIZE} pixels, a mean or standard deviation that is not three numbers from 0 to 1 (the
deviation above 0), a class list that does not match the weights, or an architecture it does not
know. `load_image` refuses a photo over {MAX_SIDE:,} pixels on a side or more than {MAX_ASPECT} times
longer than it is wide (or tall).

## Serving it over HTTP

From the root of the Deep Learning Lab repository, `python -m engine.serve --model <this zip>`
serves it at http://127.0.0.1:8000 (`POST /predict`, `GET /classify-url?url=…`, `GET /model`,
OpenAPI page at `/docs`); then `curl -F file=@photo.jpg http://127.0.0.1:8000/predict`.
"""


def checkpoint_zip(checkpoint: str | os.PathLike, *, run_id: str = "", data: str = "") -> bytes:
    """The zip (as bytes) for one checkpoint file; the weights are copied unchanged."""
    path = Path(checkpoint)
    desc = model_description(read_checkpoint_meta(path), run_id=run_id, data=data)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        # Weights barely compress; storing them keeps the download quick to build.
        zf.write(path, "model.safetensors", compress_type=zipfile.ZIP_STORED)
        zf.writestr("model.json", json.dumps(desc, indent=1))
        zf.writestr("README.md", _readme(desc))
    return buf.getvalue()


def run_zip(run: Any) -> bytes:
    """The zip for an engine.runs.Run."""
    return checkpoint_zip(run.checkpoint, run_id=run.info.id, data=run.info.data)


def zip_name(run: Any) -> str:
    """A download file name that says what the model is."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(run.info.data))[:40]
    return f"dllab-{run.info.arch}-{safe or 'data'}-{run.info.id[:8]}.zip"


__all__ = ["ZIP_NAMES", "model_description", "checkpoint_zip", "run_zip", "zip_name"]
