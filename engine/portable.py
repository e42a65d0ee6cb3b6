"""Python code that loads an exported model and predicts with it *without* this repository: only
torch, torchvision or timm (for the body), safetensors, Pillow, OpenCV and NumPy.

engine.export puts it in the zip's README; tests/engine/test_export_portable.py runs it, verbatim,
in a folder outside the repository and checks it predicts what the engine predicts. It rebuilds the
same modules under the same names as engine.models.Classifier (body.*, head.*), so the checkpoint's
tensors load with strict=True, and prepares a photo step for step as engine.images.load_image and
engine.models.preprocess_image do (OpenCV's resize, so the pixels are identical).
"""
from __future__ import annotations

from typing import Any

REQUIREMENTS = {"simple_cnn": "torch safetensors pillow opencv-python-headless numpy",
                "efficientnet_lite0": "torch timm safetensors pillow opencv-python-headless numpy"}
RESNET_REQUIREMENTS = "torch torchvision safetensors pillow opencv-python-headless numpy"

_BODIES = {
    "simple_cnn": '''\
def block(c_in, c_out, stride):   # 3x3 conv, batch norm, ReLU
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))

body = nn.Sequential(block(3, 32, 1), block(32, 64, 2), block(64, 96, 2), block(96, 128, 2))
n_features = 128
''',
    "efficientnet_lite0": '''\
import timm

net = timm.create_model("efficientnet_lite0", pretrained=False)   # the architecture only
body = nn.Sequential(net.conv_stem, net.bn1, *net.blocks, net.conv_head, net.bn2)
n_features = net.num_features
''',
    "resnet": '''\
import torchvision

net = torchvision.models.get_model("{arch}", weights=None)   # the architecture only
body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                     net.layer1, net.layer2, net.layer3, net.layer4)
n_features = net.fc.in_features
''',
}

_TEMPLATE = '''\
import json
from collections import OrderedDict

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file
from torch import nn

desc = json.load(open("model.json"))   # class order, input size, normalisation
classes, size = desc["classes"], desc["size"]
mean = torch.tensor(desc["normalisation"]["mean"]).view(3, 1, 1)
std = torch.tensor(desc["normalisation"]["std"]).view(3, 1, 1)

# The body: {arch}
{body}
class ConcatPool(nn.Module):   # average and max pooling side by side: (B, C, H, W) -> (B, 2C)
    def forward(self, x):
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)

# The head (fastai's): pool, batch norm, dropout, linear, ReLU, batch norm, dropout, linear
head = nn.Sequential(ConcatPool(), nn.BatchNorm1d(2 * n_features), nn.Dropout(0.25),
                     nn.Linear(2 * n_features, 512, bias=False), nn.ReLU(inplace=True),
                     nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, len(classes), bias=False))
model = nn.Sequential(OrderedDict(body=body, head=head))
model.load_state_dict(load_file("model.safetensors"))   # tensors only: nothing is unpickled
model.eval()


def load_photo(path):
    """uint8 RGB (H, W, 3): EXIF rotation applied, transparency composited on white."""
    img = ImageOps.exif_transpose(Image.open(path))
    if img.mode in ("RGBA", "LA", "PA", "P"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))


def prepare(rgb):
    """Shorter side to `size`, the centre square, 0-1, normalised: (1, 3, size, size)."""
    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    how = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(np.ascontiguousarray(rgb), (new_w, new_h), interpolation=how)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    crop = np.ascontiguousarray(rgb[top:top + size, left:left + size])
    x = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
    return ((x - mean) / std).unsqueeze(0)


with torch.inference_mode():
    probs = model(prepare(load_photo("photo.jpg"))).softmax(1)[0]
best = int(probs.argmax())
print(classes[best], float(probs[best]))
'''


def requirements(arch: str) -> str:
    """What `pip install` needs for the snippet of arch."""
    return RESNET_REQUIREMENTS if arch.startswith("resnet") else REQUIREMENTS[arch]


def loading_code(desc: dict[str, Any]) -> str:
    """The Python code for a model description (engine.export.model_description)."""
    arch = str(desc["arch"])
    body = _BODIES["resnet"].format(arch=arch) if arch.startswith("resnet") else _BODIES[arch]
    return _TEMPLATE.format(arch=arch, body=body)


__all__ = ["requirements", "loading_code"]
