"""Timing helpers shared by the benchmark scripts: medians of repeated runs, and one row format."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable


def median_time(fn: Callable[[], object], *, repeat: int = 7, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds over `repeat` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(name: str, value: float, unit: str, *, baseline: str = "", ratio: float | None = None,
        target: str = "", note: str = "") -> dict:
    """One line of a benchmark table."""
    return {"name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio,
            "target": target, "note": note}


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else ""
        print(f"{r['name']:<55} {r['value']:>12.4g} {r['unit']:<6} {ratio:>8}  {r.get('baseline', '')}"
              f"  {r.get('target', '')}  {r.get('note', '')}")


def niced_chromium(folder: str | Path) -> str:
    """A wrapper script that starts Chromium at the lowest CPU priority: the browser still draws every
    update but yields the cores to the server, as browsers on the students' own computers would."""
    path = Path(folder) / "chromium-nice"
    path.write_text('#!/bin/sh\nexec nice -n 19 /usr/bin/chromium "$@"\n')
    path.chmod(0o755)
    return str(path)
