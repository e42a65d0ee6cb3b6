"""A trained run as one zip a learner can take away: weights, a description, and how to load them.

    model.safetensors   the checkpoint exactly as the run store saved it (tensors + JSON header)
    model.json          classes in output order, architecture, input size and normalisation
    README.md           a few lines on loading it with engine.models.load_checkpoint
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from engine.models import read_checkpoint_meta

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

## Predicting with it

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
way will still give an answer, just a worse one.
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
