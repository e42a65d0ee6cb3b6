"""The one table of URL state: for each page, which session-state values live in the query string.

A shared link carries every row of its page's table, so opening it reproduces the view exactly.
Values from a URL are checked against the row's type, range and choices; a bad one is ignored
(the default stays) and reported, never raised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import urlencode

import streamlit as st

from engine.numbers import NumberError, read_float, read_int
from ui import state


MAX_URL_VALUE = 1000   # characters; the longest value a table holds (nine kernel cells) is far shorter


def _number(read: Callable[[str], Any], text: str) -> Any:
    """A number read by engine.numbers, its sentence turned into the short reason load() quotes."""
    try:
        return read(text)
    except NumberError as exc:
        raise ValueError(str(exc).rstrip(".")) from None


@dataclass(frozen=True)
class Param:
    """One URL parameter: `url` in the query string <-> `key` in session state."""

    url: str
    key: str
    kind: str                    # "int" | "float" | "bool" | "str" | "cells" (nine texts)
    default: Any
    choices: Sequence[Any] | None = None
    lo: float | None = None
    hi: float | None = None

    def encode(self, value: Any) -> str:
        if self.kind == "bool":
            return "1" if value else "0"
        if self.kind == "cells":
            return ",".join(str(v).strip() for v in value)
        if self.kind == "float":
            return f"{float(value):.6g}"
        return str(value)

    def decode(self, text: str) -> Any:
        """Parse one URL value; raises ValueError with a short reason when it does not fit.

        The length is checked before anything else and numbers are read by engine.numbers, so a
        link's value costs time in proportion to its length, never more."""
        text = str(text)
        if len(text) > MAX_URL_VALUE:
            raise ValueError(f"longer than {MAX_URL_VALUE} characters")
        if self.kind == "bool":
            if text not in ("0", "1", "true", "false"):
                raise ValueError("expected 0 or 1")
            value: Any = text in ("1", "true")
        elif self.kind == "int":
            value = _number(read_int, text)
        elif self.kind == "float":
            value = _number(read_float, text)
            if not math.isfinite(value):
                raise ValueError("not a finite number")
        elif self.kind == "cells":
            value = text.split(",")
            if len(value) != 9:
                raise ValueError("expected nine comma-separated values")
        else:
            value = text
        if self.choices is not None and value not in self.choices:
            raise ValueError("not one of the choices")
        if self.lo is not None and value < self.lo or self.hi is not None and value > self.hi:
            raise ValueError(f"outside {self.lo}…{self.hi}")
        return value


def _kernel_table() -> list[Param]:
    from engine.kernels import BORDERS, DISPLAY_MODES, PRESETS
    from engine.samples import SAMPLES
    PRESET_NAMES, SAMPLE_NAMES = tuple(PRESETS), tuple(SAMPLES)
    return [
        Param("sample", state.K_SAMPLE, "str", "chelsea", SAMPLE_NAMES),
        Param("preset", state.K_PRESET, "str", "top sobel", PRESET_NAMES + ("custom",)),
        Param("k", state.K_CELL, "cells", None),
        Param("grey", state.K_GREY, "bool", True),
        Param("display", state.K_DISPLAY, "str", "diverging", DISPLAY_MODES),
        Param("relu", state.K_RELU, "bool", False),
        Param("border", state.K_BORDER, "str", "zero", BORDERS),
        Param("ws", state.K_WORKSIZE, "int", 1024, (0, 512, 1024, 2048)),
        Param("x", state.K_PX, "int", -1, lo=-1, hi=100_000),
        Param("y", state.K_PY, "int", -1, lo=-1, hi=100_000),
        Param("layers", state.K_LAYERS, "int", 1, lo=1, hi=3),
        Param("l2", state.K_LAYER_PRESET.format(2), "str", "outline", PRESET_NAMES),
        Param("l3", state.K_LAYER_PRESET.format(3), "str", "blur", PRESET_NAMES),
        Param("r1", state.K_LAYER_RELU.format(1), "bool", True),
        Param("r2", state.K_LAYER_RELU.format(2), "bool", True),
        Param("hidden", state.K_HIDDEN, "str", "sharpen", PRESET_NAMES + ("the kernel in the grid",)),
        Param("linit", state.K_LEARN_INIT, "str", "zero", ("zero", "random")),
        Param("lrule", state.K_LEARN_RULE, "str", "momentum", ("momentum", "plain")),
        Param("lsteps", state.K_LEARN_STEPS, "int", 200, (25, 50, 100, 200, 400, 800)),
        Param("llr", state.K_LEARN_LR, "float", 1.0, (0.1, 0.5, 1.0, 1.9, 2.2, 3.0, 4.0)),
        Param("act", state.K_ACT, "str", "relu", ("relu", "sigmoid")),
        Param("crop", state.K_CROP, "int", 4, (3, 4, 5, 6, 8)),
    ]


def _sgd_table() -> list[Param]:
    from engine.sgd import OPTIMIZERS
    return [
        Param("lr", state.S_LR, "float", 0.1, lo=1e-4, hi=10.0),
        Param("steps", state.S_STEPS, "int", 100, lo=1, hi=1000),
        Param("bs", state.S_BATCH, "int", 0, lo=0, hi=1000),
        Param("opt", state.S_OPTIMIZER, "str", "sgd", OPTIMIZERS),
        Param("noise", state.S_NOISE, "float", 1.0, lo=0.0, hi=5.0),
        Param("n", state.S_N, "int", 100, lo=10, hi=1000),
        Param("seed", state.S_SEED, "int", 42, lo=0, hi=2**31 - 1),
        Param("a1", state.S_A1, "float", -1.0, lo=-10.0, hi=10.0),
        Param("a2", state.S_A2, "float", 1.0, lo=-10.0, hi=10.0),
        Param("logy", state.S_LOGY, "bool", True),
        Param("s3d", state.S_SURFACE3D, "bool", False),
        Param("lines", state.S_LINE_BY_LINE, "bool", False),
        Param("ms", state.S_SPEED, "int", 80, lo=10, hi=1000),
        Param("cmp", state.S_COMPARE, "str", "0.01, 0.1, 0.9, 1.05"),
        Param("beta", state.S_BETA, "float", 0.9, lo=0.0, hi=0.99),
        Param("z1", state.S_SCORE.format(1), "float", 2.0, lo=-10.0, hi=10.0),
        Param("z2", state.S_SCORE.format(2), "float", 1.0, lo=-10.0, hi=10.0),
        Param("z3", state.S_SCORE.format(3), "float", -1.0, lo=-10.0, hi=10.0),
        Param("actual", state.S_ACTUAL, "int", 0, (0, 1, 2)),
    ]


def _explore_table() -> list[Param]:
    # The run id is checked by engine.runs.load_run (format and folder) when the page opens it.
    return [Param("run", state.E_RUN, "str", ""),
            # the Inside tab (ui/explore_inside.py); indices past a run's own are clamped there
            Param("in_src", state.E_IN_SOURCE, "str", "valid", ("valid", "upload")),
            Param("in_item", state.E_IN_ITEM, "int", 0, lo=0, hi=10**7),
            Param("in_view", state.E_IN_KVIEW, "str", "rgb", ("rgb", "channels")),
            Param("in_k", state.E_IN_KERNEL, "int", 0, lo=0, hi=4096),
            Param("in_top", state.E_IN_TOP, "int", 8, (4, 8, 16)),
            Param("in_stage", state.E_IN_STAGE, "int", 0, lo=0, hi=99),
            Param("in_ch", state.E_IN_CHANNEL, "int", 0, lo=0, hi=4096),
            Param("in_alpha", state.E_IN_ALPHA, "float", 0.6, lo=0.0, hi=1.0)]


#: The weight-decay slider's steps on the Fit and overfit page (0 = none, then a log scale).
OVERFIT_WDS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _overfit_table() -> list[Param]:
    from engine.overfit import CURVES, MAX_DEGREE
    return [Param("curve", state.O_CURVE, "str", "sine", CURVES),
            Param("n", state.O_N, "int", 30, lo=10, hi=200),
            Param("noise", state.O_NOISE, "float", 0.3, lo=0.0, hi=1.0),
            Param("held", state.O_VALID, "float", 0.3, lo=0.1, hi=0.5),
            Param("seed", state.O_SEED, "int", 0, lo=0, hi=2**31 - 1),
            Param("deg", state.O_DEGREE, "int", 3, lo=1, hi=MAX_DEGREE),
            Param("wd", state.O_WD, "float", 0.0, OVERFIT_WDS),
            Param("truth", state.O_TRUTH, "bool", True),
            Param("logy", state.O_LOGY, "bool", True)]


#: The Train page's URL names: (query key, RunSettings field, session-state key). Types, bounds,
#: choices and defaults come from engine.settings, so they are written once.
TRAIN_FIELDS = (("arch", "arch", state.T_ARCH), ("pre", "pretrained", state.T_PRETRAINED),
                ("size", "size", state.T_SIZE), ("bs", "bs", state.T_BS), ("vp", "valid_pct", state.T_VALID_PCT),
                ("seed", "seed", state.T_SEED), ("aug", "augment", state.T_AUGMENT),
                ("method", "method", state.T_METHOD), ("epochs", "epochs", state.T_EPOCHS),
                ("lr", "lr", state.T_LR), ("pc", "precompute", state.T_PRECOMPUTE),
                ("lo", "lr_lo", state.T_LR_LO), ("tbn", "train_bn", state.T_TRAIN_BN),
                ("prec", "precision", state.T_PRECISION), ("wd", "wd", state.T_WD),
                ("ps", "ps", state.T_PS))


def _train_table() -> list[Param]:
    from engine.settings import FIELD_RULES, SHAREABLE_SOURCES, RunSettings
    defaults = RunSettings()
    rows = [Param("data", state.T_SOURCE, "str", SHAREABLE_SOURCES[0], SHAREABLE_SOURCES)]
    for url, name, key in TRAIN_FIELDS:
        rule = FIELD_RULES[name]
        rows.append(Param(url, key, rule.kind, getattr(defaults, name), rule.choices, rule.lo,
                          rule.hi))
    return rows


TABLES: dict[str, list[Param]] = {}


def table(page: str) -> list[Param]:
    """The URL table of a page ("kernels", "sgd", ...). Built lazily so pages import only names."""
    if page not in TABLES:
        TABLES[page] = {"kernels": _kernel_table, "sgd": _sgd_table,
                        "explore": _explore_table, "train": _train_table,
                        "overfit": _overfit_table}[page]()
    return TABLES[page]


def _get_state(p: Param) -> Any:
    if p.kind == "cells":
        return [state.get(p.key.format(i), "0") for i in range(9)]
    return state.get(p.key, p.default)


def _set_state(p: Param, value: Any) -> None:
    if p.kind == "cells":
        for i, text in enumerate(value):
            state.set_value(p.key.format(i), text)
    else:
        state.set_value(p.key, value)


def load(page: str, params: dict[str, str] | None = None) -> list[str]:
    """Copy the page's URL values into session state; returns a sentence per rejected value."""
    query = dict(st.query_params) if params is None else params
    problems = []
    for p in table(page):
        if p.url not in query:
            continue
        try:
            _set_state(p, p.decode(query[p.url]))
        except (ValueError, TypeError) as exc:
            problems.append(f"The link's value for “{p.url}” was ignored ({exc}).")
    return problems


def encode(page: str) -> dict[str, str]:
    """The page's current state as query-string pairs (every row, so a link is exact)."""
    out = {}
    for p in table(page):
        value = _get_state(p)
        if value is not None:
            out[p.url] = p.encode(value)
    return out


def sync(page: str) -> str:
    """Write the page's state into the browser's URL; returns the query string for a share link."""
    pairs = encode(page)
    current = {k: st.query_params.get(k) for k in pairs}
    if current != pairs:
        st.query_params.from_dict(pairs)
    return urlencode(pairs, safe="/,")
