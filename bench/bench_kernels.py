"""apply_kernel on a 4000×3000 RGB photo, against a plain numpy copy and scipy.ndimage.correlate.

Run: .venv/bin/python -m bench.bench_kernels
"""
from __future__ import annotations

import numpy as np

from bench.common import median_time, print_rows, row
from engine.kernels import PRESETS, apply_kernel


def run(repeat: int = 7) -> list[dict]:
    import scipy.ndimage as ndi

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    k = PRESETS["outline"]
    t_copy = median_time(lambda: image.copy(), repeat=repeat)
    t_ours = median_time(lambda: apply_kernel(image, k), repeat=repeat)
    t_sep = median_time(lambda: apply_kernel(image, PRESETS["top sobel"]), repeat=repeat)

    def scipy_per_channel():
        # The same float32 output, zero border, one channel at a time.
        f = image.astype(np.float32)
        return np.stack([ndi.correlate(f[:, :, c], k, mode="constant", cval=0.0) for c in range(3)], 2)

    t_scipy = median_time(scipy_per_channel, repeat=max(3, repeat // 2))
    assert np.allclose(apply_kernel(image[:50, :50], k),
                       np.stack([ndi.correlate(image[:50, :50, c].astype(np.float32), k, mode="constant")
                                 for c in range(3)], 2), atol=1e-3)
    return [
        row("numpy copy of 4000×3000×3 uint8 (baseline)", t_copy * 1e3, "ms"),
        row("apply_kernel 4000×3000×3 (outline, zero border)", t_ours * 1e3, "ms",
            baseline="numpy copy", ratio=t_ours / t_copy, target="≤ 8× copy (aim 4×)"),
        row("apply_kernel 4000×3000×3 (top sobel: separable)", t_sep * 1e3, "ms",
            baseline="numpy copy", ratio=t_sep / t_copy, target="≤ 8× copy (aim 4×)"),
        row("scipy.ndimage.correlate per channel", t_scipy * 1e3, "ms"),
        row("speed-up of apply_kernel over scipy", t_scipy / t_ours, "×",
            baseline="scipy per channel", ratio=t_scipy / t_ours, target="≥ 8× (aim 15×)"),
    ]


if __name__ == "__main__":
    print_rows(run())
