"""The Train page's settings: its session state, the one writer of the learning rate, the data
sources' presets, the Explorer's retrain hand-off, and the one function that turns the widgets'
values into engine.settings.RunSettings (what every job of the page is given).
"""
from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from engine.events import DataSet
from engine.settings import BATCH_SIZES, METHODS, SIZES, RunSettings, precompute_reason, preset_for
from ui import state
from ui import urlstate

PAGE = "train"
DEFAULTS = RunSettings()
#: RunSettings field -> the session key of the widget that sets it.
FIELD_KEYS: dict[str, str] = {**{name: key for _, name, key in urlstate.TRAIN_FIELDS},
                              "freeze_epochs": state.T_FREEZE_EPOCHS, "lr_lo": state.T_LR_LO}
#: Fields a retrain hand-off (a saved run's settings) may set.
RETRAIN_FIELDS = ("arch", "pretrained", "size", "bs", "valid_pct", "seed", "epochs", "lr",
                  "augment", "precompute", "train_bn", "precision", "wd", "ps")


def round_lr(value: float) -> float:
    """A learning rate to 3 significant digits: what the widget shows (%.2e), so the widget, the
    link (%.6g) and the optimiser all see this same number."""
    return float(f"{float(value):.2e}")


def use_lr(value: float) -> None:
    """The one writer of the learning rate used next (LR finder, clicks, buttons, presets, the
    retrain hand-off, a link and the widget itself all come through here)."""
    state.set_value(state.T_LR, round_lr(value))


def on_lr_widget() -> None:
    """A typed learning rate is rounded as the widget shows it."""
    use_lr(st.session_state[state.T_LR])


def init_state() -> None:
    """Widget values from their lasting keys (or defaults), then a link's values, then the
    Explorer's retrain hand-off."""
    for p in urlstate.table(PAGE):
        state.restore(p.key, p.default)
    state.restore(state.T_FREEZE_EPOCHS, DEFAULTS.freeze_epochs)
    state.restore(state.T_LR_LO, DEFAULTS.lr_lo)
    state.restore(state.T_PETS_LABELS, "species")
    if not st.session_state.get(state.T_URL_LOADED):
        st.session_state[state.T_URL_LOADED] = True
        for problem in urlstate.load(PAGE):
            st.warning(problem)
        use_lr(state.get(state.T_LR))
    apply_retrain()


def widget_keys() -> list[str]:
    """Every widget whose value lasts across pages (ui.state.remember)."""
    return [p.key for p in urlstate.table(PAGE)] + [state.T_FREEZE_EPOCHS, state.T_LR_LO,
                                                     state.T_PETS_LABELS, state.T_FOLDER]


def on_source() -> None:
    """A new source brings its own model preset (digits: small CNN at 16 px; photos: pretrained)."""
    source = st.session_state[state.T_SOURCE]
    if source != "cleaned":  # a cleaned set keeps the settings it came with
        preset = preset_for(source)
        for name in ("arch", "size", "bs", "epochs", "method"):
            state.set_value(FIELD_KEYS[name], preset[name])
        state.set_value(state.T_PRETRAINED, RunSettings(**preset).uses_pretrained)
        use_lr(preset["lr"])
    st.session_state.pop(state.T_DATASET, None)
    st.session_state.pop(state.T_VERIFY, None)


def apply_retrain() -> None:
    """Take over the settings the Explorer's “Retrain with the cleaned data” button handed over:
    a saved run's settings.json plus arch, data, data_folder and from_run."""
    handed: Mapping[str, Any] | None = st.session_state.pop(state.E_RETRAIN, None)
    if not handed:
        return
    given = {k: v for k, v in handed.items() if v is not None and (k != "method" or v in METHODS)}
    settings = RunSettings.from_dict(given)
    for name in RETRAIN_FIELDS:
        value = getattr(settings, name)
        if name not in given or (name == "size" and value not in SIZES) or \
                (name == "bs" and value not in BATCH_SIZES):
            continue  # a value the widgets cannot show keeps the page's own
        if name == "lr":
            use_lr(value)
        else:
            state.set_value(FIELD_KEYS[name], value)
    if "method" in given and settings.method in ("fit_one_cycle", "fine_tune"):
        state.set_value(state.T_METHOD, settings.method)
    folder = handed.get("data_folder") or settings.folder
    if folder:
        st.session_state[state.T_CLEANED] = {
            "folder": str(folder), "name": f"{handed.get('data') or 'data'} (cleaned)",
            # a hand-off that names no flip keeps flips on, as the page always did
            "flip": bool(settings.flip if "flip" in given else True),
            "writable": True, "from_run": handed.get("from_run")}
        state.set_value(state.T_SOURCE, "cleaned")


def run_settings(ds: DataSet | None, last: Mapping[str, Any] | None = None) -> RunSettings:
    """The run the widgets describe, for the data set ds (or none yet). Pretrained only for an
    architecture that has weights; precompute only when the settings allow it (as the page shows);
    unfreeze continues the last run."""
    value = {name: state.get(key) for name, key in FIELD_KEYS.items()}
    method = str(value["method"])
    settings = RunSettings(
        folder=ds["folder"] if ds else "", data_name=ds["name"] if ds else "",
        flip=bool(ds["flip"]) if ds else False, valid_pct=float(value["valid_pct"]),
        seed=int(value["seed"]), augment=bool(value["augment"]), arch=str(value["arch"]),
        pretrained=bool(value["pretrained"]), size=int(value["size"]), bs=int(value["bs"]),
        method=method, epochs=int(value["epochs"]), freeze_epochs=int(value["freeze_epochs"]),
        lr=float(value["lr"]), lr_lo=float(value["lr_lo"]), train_bn=bool(value["train_bn"]),
        precision=str(value["precision"]), wd=float(value["wd"]), ps=float(value["ps"]),
        start_from=(last or {}).get("run_id") if method == "unfreeze" else None)
    settings = settings.with_(pretrained=settings.uses_pretrained)
    return settings.with_(precompute=bool(value["precompute"])
                          and precompute_reason(settings) is None)


__all__ = ["PAGE", "FIELD_KEYS", "round_lr", "use_lr", "on_lr_widget", "init_state",
           "widget_keys", "on_source", "apply_retrain", "run_settings"]
