"""The SGD page's animation: a 1000-step trajectory plus its 200 animation frames, against the
PyTorch autograd loop the page shows as code, and the size of the figure the browser receives.

Run: .venv/bin/python -m bench.bench_sgd
"""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

from bench.common import median_time, print_rows, row
from engine import sgd
from ui import figures, sgd_figs

STEPS = 1000
FRAMES = 200


def run(repeat: int = 7) -> list[dict]:
    x, y = sgd.make_line_data()                      # the lesson's 100 points
    import torch  # noqa: F401  (imported before timing)

    def trajectory():
        return sgd.fit(x, y, lr=0.1, steps=STEPS)

    def trajectory_and_frames():
        res = sgd.fit(x, y, lr=0.1, steps=STEPS)
        return sgd_figs.animation_figure(x, y, res, max_frames=FRAMES)

    def as_sent():                  # what st.plotly_chart does with the page's prepared figure
        return pio.to_json(trajectory_and_frames(), validate=False)

    def through_plotly_objects():   # the usual way: a go.Figure, validated off, then to JSON
        return pio.to_json(go.Figure(trajectory_and_frames(), _validate=False), validate=False)

    def autograd_loop():
        return sgd.fit_autograd(x, y, lr=0.1, steps=STEPS, dtype=torch.float32)

    t_torch = median_time(autograd_loop, repeat=3)
    t_fit = median_time(trajectory, repeat=repeat)
    t_frames = median_time(trajectory_and_frames, repeat=repeat)
    t_sent = median_time(as_sent, repeat=repeat)
    t_objects = median_time(through_plotly_objects, repeat=3)
    baseline = f"torch autograd loop {t_torch * 1e3:.0f} ms"
    rows = [
        row(f"SGD: {STEPS}-step trajectory (numpy closed-form gradient)", t_fit, "s",
            baseline=baseline, ratio=t_fit / t_torch, note="same numbers as the autograd loop "
            "(tests/engine/test_sgd.py)"),
        row(f"SGD: {STEPS}-step trajectory + {FRAMES} animation frames", t_frames, "s",
            baseline=baseline, ratio=t_frames / t_torch, target="≤ 0.25 s (aim 0.05 s)"),
        row(f"SGD: … + figure JSON as sent to the browser", t_sent, "s", baseline=baseline,
            ratio=t_sent / t_torch, target="≤ 0.25 s"),
        row("SGD: … the same through go.Figure objects (not used)", t_objects, "s",
            baseline=f"prepared JSON {t_sent * 1e3:.0f} ms", ratio=t_objects / t_sent,
            note="why the page hands Streamlit a prepared dict"),
    ]
    cases = {"full batch": {}, "mini-batch of 1 (widest zig-zag)": {"batch_size": 1},
             "line by line (4 frames a step)": {"line_by_line": True}}
    for name, kw in cases.items():
        line_by_line = kw.pop("line_by_line", False)
        res = sgd.fit(x, y, lr=0.1, steps=STEPS, **kw)
        fig = sgd_figs.animation_figure(x, y, res, max_frames=FRAMES, line_by_line=line_by_line)
        size = figures.figure_json_size(fig)
        rows.append(row(f"SGD: {len(fig['frames'])}-frame figure JSON, {name}", size, "bytes",
                        baseline="2 MB limit", ratio=size / 2_000_000, target="< 2 MB"))
    return rows


if __name__ == "__main__":
    print_rows(run())
