"""Prediction on the CPU for one photo, as the Explorer's Predict tab does it: preprocess (resize,
centre crop, normalise) plus one forward pass, median of several runs, after a warm-up.

Models: the digits simple_cnn at 16 px (the demo and default CLI size) and efficientnet_lite0 at
224 px (the offline pretrained architecture). Weights are random: latency does not depend on them.
Grad-CAM for the same photo is measured too (a forward and a partial backward pass).

Run: .venv/bin/python -m bench.bench_predict
"""
from __future__ import annotations

import numpy as np

from bench.common import median_time, print_rows, row

CASES = (("simple_cnn", 16, 10), ("efficientnet_lite0", 224, 37))   # (arch, size, classes)


def run(repeat: int = 15) -> list[dict]:
    import torch

    from engine.interpret import grad_cam
    from engine.models import IMAGENET_MEAN, IMAGENET_STD, create_model, predict_image, preprocess_image

    rows = []
    photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # a VGA photo
    default_threads = torch.get_num_threads()
    # Both thread counts: on a busy machine (other processes on the same cores) torch's default
    # thread pool can wait far longer for its helper threads than one thread takes on its own.
    threads = sorted({1, default_threads})
    try:
        for arch, size, n_classes in CASES:
            torch.manual_seed(0)
            model = create_model(arch, n_classes, pretrained=False).eval()
            classes = [str(i) for i in range(n_classes)]
            x = preprocess_image(photo, size, IMAGENET_MEAN, IMAGENET_STD)
            base = None
            for n in threads:
                torch.set_num_threads(n)
                t = median_time(lambda: predict_image(model, photo, classes, size=size,
                                                      mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                                      device="cpu"), repeat=repeat, warmup=2)
                base = base or t
                rows.append(row(f"predict one 640×480 photo, {arch} at {size} px, {n} thread(s)",
                                t * 1000, "ms", baseline=f"{arch}, 1 thread" if t is not base else "",
                                ratio=t / base if t is not base else None))
            torch.set_num_threads(1)
            tc = median_time(lambda: grad_cam(model, x, 0), repeat=max(3, repeat // 3), warmup=1)
            rows.append(row(f"Grad-CAM for that photo, {arch} at {size} px, 1 thread", tc * 1000,
                            "ms", baseline=f"{arch} predict, 1 thread", ratio=tc / base))
    finally:
        torch.set_num_threads(default_threads)
    return rows


if __name__ == "__main__":
    print_rows(run())
