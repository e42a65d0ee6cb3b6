"""Runs side by side: the curves of each saved run on one scale, and the settings that differ.

Pure functions of saved runs' history.json and settings.json (engine.runs), so the Train page only
loads the runs and draws what these return.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

#: Settings that say where or how a run was computed rather than what was trained: never a
#: difference worth a row (the folder path of the same data set differs between machines).
IGNORED = ("folder", "device", "start_from", "num_it")
MIN_RUNS, MAX_RUNS = 2, 4


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else math.nan


def epoch_curves(history: Mapping[str, Any]) -> dict[str, list[float]]:
    """A run's per-epoch figures, numbered 1..N across its stages (fine_tune's frozen epochs
    first): {"epoch", "train_loss", "valid_loss", "error_rate"}; NaN where one is missing."""
    rows = list(history.get("epochs") or [])
    out: dict[str, list[float]] = {"epoch": [float(i) for i in range(1, len(rows) + 1)]}
    for key in ("train_loss", "valid_loss", "error_rate"):
        out[key] = [_number(r.get(key)) for r in rows]
    return out


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value)


def differing_settings(settings: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """{setting: [its value in each run, as text]} for every setting whose values are not all the
    same (a setting a run does not record counts as "—"), in the runs' own field order."""
    names: list[str] = []
    for s in settings:
        names += [k for k in s if k not in names and k not in IGNORED]
    out = {}
    for name in names:
        values = [_shown(s.get(name)) for s in settings]
        if len(set(values)) > 1:
            out[name] = values
    return out


def check_count(n: int) -> str | None:
    """A sentence when n runs cannot be compared side by side; None when they can."""
    if n < MIN_RUNS:
        return f"Pick at least {MIN_RUNS} runs to compare."
    if n > MAX_RUNS:
        return f"Pick at most {MAX_RUNS} runs: more curves on one chart are hard to tell apart."
    return None


__all__ = ["IGNORED", "MIN_RUNS", "MAX_RUNS", "epoch_curves", "differing_settings", "check_count"]
