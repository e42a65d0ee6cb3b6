"""What every page's Plotly figures share: safe label text, a figure handed over as prepared JSON,
and numpy arrays written as Plotly's compact typed arrays. Pure functions, no Streamlit calls.

Each page's own figures live beside it: ui/kernels_figs.py, ui/sgd_figs.py, ui/train_figs.py.
"""
from __future__ import annotations

import base64
import json
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go


def plotly_text(text: object) -> str:
    """A name the user controls (class, file, data set), made safe for any Plotly text: axis tick
    labels, hover text, `text`, titles.

    Plotly reads a small HTML subset in every label (<b>, <i>, <br>, <sup>, <a href=…>, <span
    style=…>) and decodes entities, so the class "<b>cat" would show as a bold "cat" and
    "fish &amp; chips" as "fish & chips". With <, > and & written as entities, which Plotly turns
    back into characters after reading the tags, the name shows exactly as written. Quotes stay
    as they are: outside a tag they mean nothing to Plotly, and it does not decode &quot;.
    """
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plotly_texts(texts: Sequence[object]) -> list[str]:
    return [plotly_text(t) for t in texts]


class ReadyFigure(go.Figure):
    """A figure already written as plain Plotly JSON.

    st.plotly_chart turns a dict into a validated go.Figure (≈10 ms for a small heatmap, far more
    for an animation with hundreds of traces), but takes a Figure's `to_dict()` as it is; handing
    back the prepared dict skips that. If Streamlit ever stops calling to_dict, the chart still
    works, only slower.
    """

    def __init__(self, spec: dict):
        super().__init__()
        self._spec = spec

    def to_dict(self) -> dict:
        return self._spec


def typed_array(values) -> dict[str, str]:
    """A float32 array in Plotly's compact JSON form: base64 of its little-endian bytes."""
    a = np.ascontiguousarray(values, dtype="<f4")
    spec = {"dtype": "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ",".join(str(d) for d in a.shape)
    return spec


def decode_typed_array(spec) -> np.ndarray:
    """The inverse of `typed_array` (plain lists pass through as arrays)."""
    if isinstance(spec, dict) and "bdata" in spec:
        a = np.frombuffer(base64.b64decode(spec["bdata"]), dtype="<" + spec["dtype"]).copy()
        return a.reshape([int(d) for d in spec["shape"].split(",")]) if "shape" in spec else a
    return np.asarray(spec)


def typed_arrays(value):
    """Every numpy array inside a figure dict -> a typed array, so the dict is plain JSON."""
    if isinstance(value, np.ndarray):
        return typed_array(value)
    if isinstance(value, dict):
        return {k: typed_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed_arrays(v) for v in value]
    return value


def figure_json_size(fig: dict[str, Any]) -> int:
    """Bytes of the figure's JSON (what the browser receives for it)."""
    return len(json.dumps(fig, separators=(",", ":")).encode())
