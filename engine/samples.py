"""Sample photos that ship with scikit-image, so the app works with no upload and no network."""
from __future__ import annotations

import numpy as np

#: name -> (scikit-image function, one-line description)
SAMPLES: dict[str, tuple[str, str]] = {
    "chelsea": ("chelsea", "Chelsea the cat (451×300, colour)"),
    "astronaut": ("astronaut", "Astronaut Eileen Collins (512×512, colour)"),
    "coffee": ("coffee", "A cup of coffee (600×400, colour)"),
    "camera": ("camera", "The cameraman (512×512, grey)"),
    "brick": ("brick", "A brick wall (512×512, grey): strong horizontal and vertical edges"),
    "rocket": ("rocket", "A rocket on its launch pad (640×427, colour)"),
    "coins": ("coins", "Old coins (384×303, grey)"),
    "text": ("text", "Hand-drawn text (448×172, grey)"),
    "retina": ("retina", "A human retina (1411×1411, colour): a larger photo"),
}


def load_sample(name: str) -> np.ndarray:
    """A bundled photo as uint8 (H, W, 3) RGB; raises KeyError listing the names for an unknown one."""
    if name not in SAMPLES:
        raise KeyError(f"Unknown sample {name!r}; choose one of {', '.join(SAMPLES)}.")
    import skimage.data

    img = np.asarray(getattr(skimage.data, SAMPLES[name][0])())
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))
