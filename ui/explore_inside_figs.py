"""Plotly figures of the Explorer's Inside tab: a grid of small pictures (learned kernels, or the
feature maps of one stage) where a click on a tile picks it. Pure functions: arrays in, a Plotly
dict out (no Streamlit calls)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ui.kernels_figs import BLACK_WHITE, BLUE_ORANGE


def tile_centres(n: int, cols: int, h: int, w: int, gap: int) -> list[tuple[float, float]]:
    """(x, y) of the centre of each of n tiles laid out as engine.inside.tile_grid lays them."""
    cols = max(1, min(cols, n))
    return [((i % cols) * (w + gap) + (w - 1) / 2, (i // cols) * (h + gap) + (h - 1) / 2)
            for i in range(n)]


def _nan_to_none(a: np.ndarray, digits: int = 3) -> list:
    """A 2-D float array as nested lists with None for NaN (JSON has no NaN; Plotly leaves a gap)."""
    out = np.round(np.asarray(a, np.float64), digits).astype(object)
    out[np.isnan(np.asarray(a, np.float64))] = None
    return out.tolist()


def mosaic_figure(mosaic: np.ndarray, tile_hw: tuple[int, int], gap: int, cols: int,
                  ids: Sequence[int], labels: Sequence[str], *, picked: int | None = None,
                  kind: str = "grey", height: int = 320) -> dict:
    """A grid of tiles as one picture, with an invisible marker on every tile to take the click
    (Plotly cannot select heatmap or image cells). Each marker's customdata is its id.

    mosaic: (H, W, 3) values in 0…1 with NaN gaps for kind "rgb", else (H, W) in 0…1 ("grey") or
    −1…1 ("diverging"); ids and labels: one per tile, in order; picked: the id outlined."""
    h, w = tile_hw
    centres = tile_centres(len(ids), cols, h, w, gap)
    if kind == "rgb":
        rgb = np.nan_to_num(np.asarray(mosaic, np.float64), nan=1.0)
        picture = {"type": "image", "z": np.rint(rgb * 255).astype(int).tolist(),
                   "hoverinfo": "skip"}
    else:
        scale = ({"colorscale": BLUE_ORANGE, "zmin": -1, "zmax": 1} if kind == "diverging"
                 else {"colorscale": BLACK_WHITE, "zmin": 0, "zmax": 1})
        picture = {"type": "heatmap", "z": _nan_to_none(mosaic), "showscale": False,
                   "hoverinfo": "skip", **scale}
    faint = {"marker": {"opacity": 0.01}}
    picker = {"type": "scatter", "mode": "markers", "x": [c[0] for c in centres],
              "y": [c[1] for c in centres], "customdata": [int(i) for i in ids],
              "text": list(labels), "hovertemplate": "%{text}<extra></extra>",
              "marker": {"symbol": "square", "size": 14, "opacity": 0.01, "color": "#000"},
              "selected": faint, "unselected": faint, "showlegend": False}
    shapes = []
    if picked is not None and picked in list(ids):
        x, y = centres[list(ids).index(picked)]
        shapes.append({"type": "rect", "x0": x - w / 2, "x1": x + w / 2,
                       "y0": y - h / 2, "y1": y + h / 2,
                       "line": {"color": "#e1a000", "width": 3}})
    layout = {"height": height, "dragmode": False, "clickmode": "event+select", "shapes": shapes,
              "margin": {"l": 4, "r": 4, "t": 4, "b": 4},
              "xaxis": {"visible": False, "constrain": "domain"},
              "yaxis": {"visible": False, "autorange": "reversed", "scaleanchor": "x"}}
    return {"data": [picture, picker], "layout": layout}


__all__ = ["tile_centres", "mosaic_figure"]
